package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/xborder/xborder/gateway/exchange"
)

// The operator listener is plain HTTP. What only reads the gateway's health
// (/healthz, /readyz, /metrics) answers callers on loopback and private
// networks without credentials; everything else — the dead-letter queue and
// its requeue, the audit export and subject report, pprof — requires the
// operator's bearer token (config ops_token_file), compared in constant
// time. A gateway without a token refuses those endpoints (403).

// opsAuth checks "Authorization: Bearer <token>" against token.
func opsAuth(token []byte, log func(c *gin.Context, p Problem)) gin.HandlerFunc {
	var want [sha256.Size]byte
	if len(token) > 0 {
		want = sha256.Sum256(token)
	}
	return func(c *gin.Context) {
		if len(token) == 0 {
			log(c, problem(CodeOpsTokenNotConfigured, "this endpoint needs the operator token, and the gateway has none (config ops_token_file)"))
			return
		}
		scheme, got, ok := strings.Cut(c.GetHeader("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(got) == "" {
			c.Header("WWW-Authenticate", `Bearer realm="xborder-ops"`)
			log(c, problem(CodeOpsTokenMissing, "send the operator token (ops_token_file) as Authorization: Bearer <token>"))
			return
		}
		// Hashing first makes the comparison independent of the lengths.
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="xborder-ops", error="invalid_token"`)
			log(c, problem(CodeOpsTokenInvalid, "the operator token does not match the gateway's ops_token_file"))
			return
		}
		c.Next()
	}
}

// privateOnly admits callers on loopback, private (RFC 1918, RFC 4193) and
// link-local addresses only.
func privateOnly(log func(c *gin.Context, p Problem)) gin.HandlerFunc {
	return func(c *gin.Context) {
		ap, err := netip.ParseAddrPort(c.Request.RemoteAddr)
		if err == nil {
			a := ap.Addr().Unmap()
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() {
				c.Next()
				return
			}
		}
		log(c, problem(CodeOpsNetworkRefused, "the operator listener answers loopback and private networks only"))
	}
}

// AuditExporter writes the audit log as an export (audit.Export): every
// chain, ending with a checkpoint signed now.
type AuditExporter func(ctx context.Context, w io.Writer) error

// SubjectReporter answers "who received what about this subject".
type SubjectReporter func(ctx context.Context, ref string) (any, error)

// auditRoutes adds GET /audit/export and POST /audit/subject ({"ref": …};
// in the body, so that the reference stays out of URLs and access logs).
func auditRoutes(r gin.IRoutes, o OpsOptions) {
	if o.AuditExport != nil {
		r.GET("/audit/export", func(c *gin.Context) {
			// An export outlasts the listener's write timeout.
			_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(10 * time.Minute))
			c.Header("Content-Type", "application/jsonl")
			c.Header("Cache-Control", "no-store")
			c.Status(http.StatusOK)
			if err := o.AuditExport(c.Request.Context(), c.Writer); err != nil {
				// The status is sent: the export ends without its final
				// checkpoint, which a verifier reports as cut off.
				o.Logger.Error("audit export failed", "error", err)
				return
			}
			o.Logger.Info("audit exported to an operator", "remote", c.ClientIP())
		})
	}
	if o.Subject != nil {
		r.POST("/audit/subject", func(c *gin.Context) {
			var req struct {
				Ref string `json:"ref"`
			}
			body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4096))
			if err != nil || json.Unmarshal(body, &req) != nil || req.Ref == "" || len(req.Ref) > 200 {
				writeProblem(c, o.Logger, problem(CodeBadRequest, `the body must be {"ref": "<subject reference>"}`), nil)
				return
			}
			out, err := o.Subject(c.Request.Context(), req.Ref)
			if err != nil {
				writeProblem(c, o.Logger, problem(exchange.CodeUnavailable, "the audit log cannot be read now"), err)
				return
			}
			c.Header("Cache-Control", "no-store")
			c.JSON(http.StatusOK, out)
		})
	}
}
