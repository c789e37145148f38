// Package api is the gateway's HTTP surface on gin: the mTLS exchange API
// (PROTOCOL §3–§5) and the operator listener. Handlers decode, call the
// exchange, and render answers or problem+json; nothing else.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/xborder/xborder/adapters/inbox"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/gateway/wire"
)

const identityKey = "xborder.identity"

// PolicyAdmin is what compliance officers reach through the API.
type PolicyAdmin interface {
	Current() *policy.Bundle
	Status() policy.Status
}

// Submitter is the exchange as the API uses it (an *exchange.Exchange).
type Submitter interface {
	Submit(ctx context.Context, identity string, body []byte) (*exchange.Answer, error)
	Status(ctx context.Context, identity, id string) (*wire.StatusBody, error)
}

// Options are the API's dependencies.
type Options struct {
	Exchange  Submitter
	Registry  exchange.Registry
	Inbox     *inbox.Inbox
	Policy    PolicyAdmin
	JWKS      func() []byte // the gateway's public keys, as served
	BodyLimit int64
	Logger    *slog.Logger
	// Subject, when set, answers compliance officers' "who received what
	// about this person" (POST /v1/audit/subject, {"ref": REF}).
	Subject func(ctx context.Context, ref string) (any, error)
	// SubjectLimiter, when set, is asked before each subject report; it
	// returns how long the participant must wait when its quota is spent.
	SubjectLimiter func(ctx context.Context, participant string) (time.Duration, error)
	// Metrics, when set, counts requests by route and status.
	Metrics *Metrics
	// Limiter, when set, is asked before a message is opened; it returns
	// how long the sender must wait when its quota is spent.
	Limiter func(ctx context.Context, sender string) (time.Duration, error)
	// ShadowReport, when set, answers compliance officers' GET
	// /v1/policy/shadow: the report of the candidate running in shadow
	// (false when none was started).
	ShadowReport func(ctx context.Context) (any, bool)
}

func init() { gin.SetMode(gin.ReleaseMode) }

// New returns the exchange API handler. It expects requests that came over
// TLS with a verified client certificate.
func New(o Options) (http.Handler, error) {
	if o.Exchange == nil || o.Registry == nil || o.Inbox == nil || o.JWKS == nil {
		return nil, errors.New("api: missing dependency")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BodyLimit <= 0 {
		o.BodyLimit = 1 << 20
	}
	h := &handlers{o: o, log: o.Logger}
	r := gin.New()
	if err := r.SetTrustedProxies(nil); err != nil {
		return nil, err
	}
	r.HandleMethodNotAllowed = true
	// No path cleaning: a path that is not one of the API's answers 404
	// problem+json, never a redirect to another endpoint.
	r.RedirectTrailingSlash, r.RedirectFixedPath, r.RemoveExtraSlash = false, false, false
	if o.Metrics != nil {
		r.Use(o.Metrics.Observe)
	}
	r.Use(h.recover, h.identify)
	r.NoRoute(func(c *gin.Context) {
		writeProblem(c, h.log, problem(exchange.CodeNotFound, "no such endpoint"), nil)
	})
	r.NoMethod(func(c *gin.Context) {
		writeProblem(c, h.log, problem(CodeMethodNotAllowed, "method not allowed here"), nil)
	})
	v1 := r.Group("/v1")
	v1.POST("/messages", h.submit)
	v1.GET("/messages/:id", h.status)
	v1.GET("/inbox", h.fetch)
	v1.POST("/inbox/:delivery_id/ack", h.ack)
	v1.GET("/jwks", h.jwks)
	v1.GET("/policy", h.compliance, h.policyStatus)
	v1.POST("/policy/evaluate", h.compliance, h.policyEvaluate)
	v1.GET("/policy/shadow", h.compliance, h.policyShadow)
	v1.POST("/audit/subject", h.compliance, h.subject)
	// PROTOCOL §5 (revision 2) names GET with ?ref=, and clients are
	// written from it: it stays, under the same quota. POST keeps the
	// reference out of URLs (proxies and access logs keep those) and is
	// what our own tools use.
	v1.GET("/audit/subject", h.compliance, h.subject)
	return r, nil
}

type handlers struct {
	o   Options
	log *slog.Logger
}

func (h *handlers) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			writeProblem(c, h.log, problem(CodeInternal, "the gateway failed to handle this request"), errors.New("panic in handler"))
		}
	}()
	c.Next()
}

// identify turns the verified client certificate into a participant id.
func (h *handlers) identify(c *gin.Context) {
	reg := h.o.Registry.Load()
	if c.Request.TLS == nil || reg == nil {
		writeProblem(c, h.log, problem(exchange.CodeUnknownParticipant, "a client certificate of a registered participant is required"), nil)
		return
	}
	id, err := reg.Identify(c.Request.TLS)
	if err != nil {
		writeProblem(c, h.log, problem(exchange.CodeUnknownParticipant, "the client certificate names no registered participant"), err)
		return
	}
	// A suspended participant neither sends nor receives (R14): not even
	// its inbox is served.
	if p, ok := reg.Participant(id); !ok || p.Suspended {
		writeProblem(c, h.log, problem(exchange.CodeUnknownParticipant, "this participant is suspended"), nil)
		return
	}
	c.Set(identityKey, id)
	c.Next()
}

func (h *handlers) compliance(c *gin.Context) {
	p, ok := h.o.Registry.Load().Participant(c.GetString(identityKey))
	if !ok || p.Suspended || !hasRole(p, "compliance") || h.o.Policy == nil {
		writeProblem(c, h.log, problem(exchange.CodeForbidden, "only compliance officers may use this endpoint"), nil)
		return
	}
	c.Next()
}

func hasRole(p *trust.Participant, role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func (h *handlers) submit(c *gin.Context) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/jose" {
		writeProblem(c, h.log, problem(CodeUnsupportedMediaType, "the body must be application/jose (a compact JWE)"), nil)
		return
	}
	if c.Request.ContentLength > h.o.BodyLimit {
		writeProblem(c, h.log, problem(CodePayloadTooLarge, "the body exceeds "+strconv.FormatInt(h.o.BodyLimit, 10)+" bytes"), nil)
		return
	}
	identity := c.GetString(identityKey)
	if h.o.Limiter != nil {
		wait, err := h.o.Limiter(c.Request.Context(), identity)
		if err != nil {
			renderError(c, h.log, &exchange.Error{Code: exchange.CodeUnavailable, Detail: "the gateway cannot count requests now; nothing was accepted", Err: err})
			return
		}
		if wait > 0 {
			c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			writeProblem(c, h.log, problem(CodeRateLimited, "the sender's quota is spent"), nil)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, h.o.BodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeProblem(c, h.log, problem(CodePayloadTooLarge, "the body exceeds "+strconv.FormatInt(h.o.BodyLimit, 10)+" bytes"), nil)
			return
		}
		writeProblem(c, h.log, problem(CodeBadRequest, "the body could not be read"), err)
		return
	}
	ans, err := h.o.Exchange.Submit(c.Request.Context(), identity, body)
	if err != nil {
		renderError(c, h.log, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(ans.Status, "application/json", ans.Body)
}

func (h *handlers) status(c *gin.Context) {
	st, err := h.o.Exchange.Status(c.Request.Context(), c.GetString(identityKey), c.Param("id"))
	if err != nil {
		renderError(c, h.log, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (h *handlers) fetch(c *gin.Context) {
	max := 10
	if s := c.Query("max"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > inbox.MaxFetch {
			writeProblem(c, h.log, problem(CodeBadRequest, "max must be a whole number from 1 to "+strconv.Itoa(inbox.MaxFetch)), nil)
			return
		}
		max = n
	}
	items, err := h.o.Inbox.Fetch(c.Request.Context(), c.GetString(identityKey), max)
	if err != nil {
		renderError(c, h.log, &exchange.Error{Code: exchange.CodeUnavailable, Detail: "the inbox cannot be read now", Err: err})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"deliveries": items})
}

func (h *handlers) ack(c *gin.Context) {
	err := h.o.Inbox.Ack(c.Request.Context(), c.GetString(identityKey), c.Param("delivery_id"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(c, h.log, problem(exchange.CodeNotFound, "no such delivery in your inbox"), nil)
	case err != nil:
		renderError(c, h.log, &exchange.Error{Code: exchange.CodeUnavailable, Detail: "the inbox cannot be written now", Err: err})
	default:
		c.Status(http.StatusNoContent)
	}
}

func (h *handlers) jwks(c *gin.Context) {
	c.Data(http.StatusOK, "application/jwk-set+json", h.o.JWKS())
}

func (h *handlers) policyStatus(c *gin.Context) {
	c.JSON(http.StatusOK, h.o.Policy.Status())
}

// subject lists, for one subject reference, which participants received
// which data categories, when, for which purpose, under which decision —
// from the audit log, without the data. The reference travels in the body
// ({"ref": …}): a URL lands in proxy and access logs. Reports are counted
// per participant: each one names a person.
func (h *handlers) subject(c *gin.Context) {
	if h.o.SubjectLimiter != nil {
		wait, err := h.o.SubjectLimiter(c.Request.Context(), c.GetString(identityKey))
		if err != nil {
			renderError(c, h.log, &exchange.Error{Code: exchange.CodeUnavailable, Detail: "the gateway cannot count requests now", Err: err})
			return
		}
		if wait > 0 {
			c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
			writeProblem(c, h.log, problem(CodeRateLimited, "too many subject reports from this participant; wait and try again"), nil)
			return
		}
	}
	var req struct {
		Ref string `json:"ref"`
	}
	var err error
	if c.Request.Method == http.MethodGet {
		req.Ref = c.Query("ref")
	} else {
		var body []byte
		body, err = io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4<<10))
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
	}
	ref := req.Ref
	if err != nil || ref == "" || len(ref) > 200 || h.o.Subject == nil {
		writeProblem(c, h.log, problem(CodeBadRequest, `the reference is missing or too long: POST {"ref": "<subject reference>"} (or GET ?ref=), at most 200 characters`), nil)
		return
	}
	out, err := h.o.Subject(c.Request.Context(), ref)
	if err != nil {
		renderError(c, h.log, &exchange.Error{Code: exchange.CodeUnavailable, Detail: "the audit log cannot be read now", Err: err})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, out)
}

// policyEvaluate answers a decision for an input, sending nothing anywhere.
func (h *handlers) policyEvaluate(c *gin.Context) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, h.o.BodyLimit))
	if err != nil {
		writeProblem(c, h.log, problem(CodePayloadTooLarge, "the body exceeds the limit"), nil)
		return
	}
	if _, err := envelope.DecodeStrict(body, 32); err != nil {
		writeProblem(c, h.log, problem(CodeBadRequest, "the body is not a JSON decision input"), nil)
		return
	}
	// A bare input or a scenario file, as `xborder policy eval` takes.
	in, err := policy.ParseInput(body)
	if err != nil {
		writeProblem(c, h.log, problem(CodeBadRequest, "the body is not a decision input (DOMAIN.md §7) or a scenario file"), nil)
		return
	}
	b := h.o.Policy.Current()
	if b == nil {
		writeProblem(c, h.log, problem(exchange.CodeUnavailable, "no policy is loaded"), nil)
		return
	}
	dec, err := b.Decide(c.Request.Context(), in)
	if err != nil {
		h.log.Warn("policy evaluation failed on a compliance request", "error", err)
	}
	c.JSON(http.StatusOK, gin.H{"decision": dec, "policy_version": b.Version})
}

// policyShadow is the report of the candidate running in shadow.
func (h *handlers) policyShadow(c *gin.Context) {
	if h.o.ShadowReport == nil {
		writeProblem(c, h.log, problem(exchange.CodeNotFound, "no shadow run on this gateway"), nil)
		return
	}
	rep, ok := h.o.ShadowReport(c.Request.Context())
	if !ok {
		writeProblem(c, h.log, problem(exchange.CodeNotFound, "no shadow run was started (see the console's impact page)"), nil)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, rep)
}
