package edge

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

// metrics are the edge's counters since start (the outbox depth and the
// quarantine are read from the store).
type metrics struct {
	queued, attempts, accepted, refused, expired atomic.Int64
	handovers, handoverFailures, quarantined     atomic.Int64
	outboundDenied                               atomic.Int64
	retentionPurged                              atomic.Int64
}

func (e *Edge) opsRoutes() http.Handler {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash, r.RedirectFixedPath, r.RemoveExtraSlash = false, false, false // 404, never a redirect
	r.Use(gin.Recovery())
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", e.readyz)
	r.GET("/metrics", e.metrics)
	r.GET("/audit/export", e.requireOpsToken, e.auditExport)
	if e.cfg.Pprof == "true" {
		// Profiling, for operators on the operator listener only.
		r.Any("/debug/pprof/*name", e.requireOpsToken, gin.WrapF(func(w http.ResponseWriter, req *http.Request) {
			switch req.URL.Path {
			case "/debug/pprof/profile":
				httppprof.Profile(w, req)
			case "/debug/pprof/trace":
				httppprof.Trace(w, req)
			default:
				httppprof.Index(w, req)
			}
		}))
	}
	r.NoRoute(func(c *gin.Context) { e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such path")) })
	r.NoMethod(func(c *gin.Context) {
		e.writeProblem(c, newProblem(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this path"))
	})
	return r
}

// Ready reports whether the edge can take and send messages: the outbox
// can write, and the hub answered within HubFresh. The reason says why not.
func (e *Edge) Ready() (bool, string) {
	if err := e.store.Probe(); err != nil {
		return false, "the outbox cannot write"
	}
	last := e.lastHub.Load()
	if last == 0 {
		return false, "the hub has not answered yet: " + e.lastHubErr.Load().(string)
	}
	if since := e.o.Now().Sub(time.Unix(0, last)); since > e.o.HubFresh {
		return false, fmt.Sprintf("the hub has not answered for %ds: %s", int(since.Seconds()), e.lastHubErr.Load().(string))
	}
	return true, ""
}

func (e *Edge) readyz(c *gin.Context) {
	ok, why := e.Ready()
	c.Header("Cache-Control", "no-store")
	if !ok {
		c.Header("Content-Type", "application/problem+json")
		p := newProblem(http.StatusServiceUnavailable, CodeNotReady, why)
		p.ErrorID = uuid.NewString()
		c.AbortWithStatusJSON(p.Status, p)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "participant": e.cfg.Participant})
}

func (e *Edge) metrics(c *gin.Context) {
	cnt, err := e.store.Counts()
	if err != nil {
		e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot be read"))
		return
	}
	oldest := 0.0
	if !cnt.Oldest.IsZero() {
		oldest = e.o.Now().Sub(cnt.Oldest).Seconds()
	}
	var b strings.Builder
	g := func(name, help, typ string, v any) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	g("xborder_edge_outbox_depth", "Messages queued in the outbox (no final answer yet).", "gauge", cnt.Depth)
	g("xborder_edge_outbox_oldest_queued_seconds", "Age of the oldest queued message (0 when none).", "gauge", oldest)
	g("xborder_edge_store_commits_total", "Write transactions of the edge's store (each one fsynced).", "counter", cnt.Commits)
	g("xborder_edge_send_attempts_total", "Sends to the hub (first sends and retries of the same bytes).", "counter", e.m.attempts.Load())
	fmt.Fprintf(&b, "# HELP xborder_edge_outbox_final_total Messages that got their final answer, by status.\n# TYPE xborder_edge_outbox_final_total counter\n")
	for _, s := range []struct {
		name string
		v    int64
	}{{StatusAccepted, e.m.accepted.Load()}, {StatusRefused, e.m.refused.Load()}, {StatusExpired, e.m.expired.Load()}} {
		fmt.Fprintf(&b, "xborder_edge_outbox_final_total{status=%q} %d\n", s.name, s.v)
	}
	g("xborder_edge_queued_total", "Messages the local systems queued.", "counter", e.m.queued.Load())
	g("xborder_edge_outbound_denied_total", "Messages the participant's outbound policy refused.", "counter", e.m.outboundDenied.Load())
	g("xborder_edge_handovers_total", "Deliveries handed over to the participant's systems.", "counter", e.m.handovers.Load())
	g("xborder_edge_handover_failures_total", "Hand-overs that failed (the hub offers them again).", "counter", e.m.handoverFailures.Load())
	g("xborder_edge_retention_purged_total", "Final records (messages, hand-over markers, quarantined deliveries) purged past the retention.", "counter", e.m.retentionPurged.Load())
	g("xborder_edge_quarantined", "Deliveries that failed verification and are kept in quarantine.", "gauge", cnt.Quarantined)
	g("xborder_edge_local_inbox_depth", "Deliveries waiting in the local inbox (deliver: local).", "gauge", cnt.LocalInbox)
	ready, _ := e.Ready()
	r := 0
	if ready {
		r = 1
	}
	g("xborder_edge_ready", "1 when /readyz is 200.", "gauge", r)
	c.Header("Content-Type", "text/plain; version=0.0.4")
	c.String(http.StatusOK, b.String())
}

// requireOpsToken admits a call with the operator token.
func (e *Edge) requireOpsToken(c *gin.Context) {
	if e.opsToken == nil {
		e.writeProblem(c, newProblem(http.StatusForbidden, CodeOpsTokenNotConfigured, "no ops_token_file is configured"))
		return
	}
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), e.opsToken) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="xborder-edge-ops"`)
		e.writeProblem(c, newProblem(http.StatusUnauthorized, CodeUnauthorized, "the operator token is missing or not valid"))
		return
	}
}

// auditExport writes the edge's audit chain as JSON lines ending with a
// checkpoint signed now with the participant's key (the hub's export
// format: `xborder audit verify --file EXPORT --jwks PARTICIPANT/sign.pub.jwk`
// checks it offline).
func (e *Edge) auditExport(c *gin.Context) {
	c.Header("Content-Type", "application/x-ndjson")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	if err := audit.Export(c.Request.Context(), e.store, c.Writer, e.me.Signing); err != nil {
		e.log.Error("audit export failed", "error", err)
	}
}

// localToken is one caller of the local API.
type localToken struct{ name, token string }

// readLocalTokens reads local_token_file: one token a line, `NAME TOKEN`
// or a lone `TOKEN` (named "token"); blank lines and # comments skipped.
func readLocalTokens(path string) ([]localToken, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("edge: local_token_file: %w", err)
	}
	defer f.Close()
	var out []localToken
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		t := localToken{name: "token"}
		switch len(fields) {
		case 1:
			t.token = fields[0]
		case 2:
			t.name, t.token = fields[0], fields[1]
		default:
			return nil, fmt.Errorf("edge: local_token_file: line %d: want NAME TOKEN or TOKEN", n)
		}
		if len(t.token) < 32 {
			return nil, fmt.Errorf("edge: local_token_file: line %d: a token has at least 32 characters", n)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("edge: local_token_file: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("edge: local_token_file holds no token")
	}
	return out, nil
}

// purposeCatalogue reads the purposes of the policy data this binary
// carries (R2), so that a purpose the hub would refuse is refused before
// anything is sent.
func purposeCatalogue() (map[string]bool, error) {
	raw, err := fs.ReadFile(policies.FS(), policy.DataFile)
	if err != nil {
		return nil, fmt.Errorf("edge: purpose catalogue: %w", err)
	}
	var d struct {
		Data struct {
			Purposes map[string]json.RawMessage `json:"purposes"`
		} `json:"xborder_data"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || len(d.Data.Purposes) == 0 {
		return nil, errors.New("edge: purpose catalogue: the policy data lists no purposes")
	}
	out := make(map[string]bool, len(d.Data.Purposes))
	for p := range d.Data.Purposes {
		out[p] = true
	}
	return out, nil
}
