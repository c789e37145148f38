// Package console is the compliance officers' web console, served under
// /console/ on the exchange listener (mTLS): the rules in force and their
// history, a decision tried on any input, the impact of a candidate policy
// before it serves, and who received what about one subject.
//
// Pages are rendered on the server (html/template, assets embedded); no
// script runs in the browser. Every answer carries a strict Content
// Security Policy (default-src 'self', nothing inline, frame-ancestors
// 'none') and Cache-Control: no-store. Only participants holding the
// registry role "compliance" get in; others get a plain 403 page. Every
// form carries a token bound to the client certificate (CSRF), and
// cross-origin POSTs are refused (http.CrossOriginProtection).
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
	"github.com/xborder/xborder/gateway/ratelimit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Role is the registry role that opens the console.
const Role = "compliance"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Registry gives the trust registry in force.
type Registry interface {
	Load() *trust.Registry
}

// Policy is the policy engine as the console uses it.
type Policy interface {
	Current() *policy.Bundle
	Status() policy.Status
}

// Options are the console's dependencies; Registry, Policy and Audit are
// required.
type Options struct {
	Registry Registry
	Policy   Policy
	// Audit is the audit log as read (every replica's chain).
	Audit audit.Backend
	// VerifyAudit checks every chain and its signed checkpoints.
	VerifyAudit func(ctx context.Context) (audit.Summary, error)
	// Subject returns the subject hash of ref and its audit entries.
	Subject func(ctx context.Context, ref string) (string, []audit.Entry, error)
	// SubjectLimit, when set, counts one subject report of an officer and
	// says how long the officer must wait when the quota is spent.
	SubjectLimit func(ctx context.Context, participant string) (time.Duration, error)
	// Depths are the deliveries waiting per recipient.
	Depths func(ctx context.Context) (map[string]int, error)
	// DeadLetters are the dead-lettered deliveries.
	DeadLetters func(ctx context.Context) ([]store.Delivery, error)
	// Certificates are the client certificates seen on the listener.
	Certificates *Certificates
	// History lists the policy changes told by the engine since start
	// (History.Record is the engine's OnChange hook).
	History *History
	// Variants is how many generated inputs an impact run decides by
	// default (10,000 when zero).
	Variants int
	// Inputs makes the generator of an impact run (impact.Synth, the
	// adversarial generator of gateway/policy/synth, when nil).
	Inputs InputsFunc
	// Worker starts the worker process a candidate is compiled, tested
	// and decided in (its limits; the running binary by default).
	Worker worker.Options
	// ShadowDropped is told of each live decision a shadow run dropped
	// because its candidate was behind (a metric).
	ShadowDropped func()
	Logger        *slog.Logger
	Now           func() time.Time
}

// InputsFunc makes the generator of an impact run.
type InputsFunc func(seed int64, live *policy.Bundle, parties []policy.Party, now time.Time) (impact.Source, error)

// Console is the handler and the state of the running comparisons.
type Console struct {
	o      Options
	log    *slog.Logger
	pages  map[string]*template.Template
	csrf   []byte // the key of the per-certificate form tokens
	static http.Handler
	stats  *stats

	mu      sync.Mutex
	jobs    []*job // newest last, bounded
	running bool
	verify  *verifyResult
	shadow  atomic.Pointer[impact.Shadow]

	cspReports atomic.Int64
	cspQuota   *ratelimit.Limiter // CSP reports per officer
}

// New checks the options and parses the templates.
func New(o Options) (*Console, error) {
	if o.Registry == nil || o.Policy == nil || o.Audit == nil {
		return nil, errors.New("console: missing dependency")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Variants <= 0 {
		o.Variants = 10000
	}
	if o.Inputs == nil {
		o.Inputs = func(seed int64, live *policy.Bundle, parties []policy.Party, now time.Time) (impact.Source, error) {
			return impact.Synth(seed, live, parties, now)
		}
	}
	if o.Certificates == nil {
		o.Certificates = NewCertificates()
	}
	if o.History == nil {
		o.History = &History{}
	}
	c := &Console{o: o, log: o.Logger.With("component", "console"), csrf: make([]byte, 32),
		cspQuota: &ratelimit.Limiter{Default: cspReportQuota, Counter: &ratelimit.Memory{}, Clock: o.Now}}
	if _, err := rand.Read(c.csrf); err != nil {
		return nil, err
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	c.stats = newStats(o.Audit)
	return c, nil
}

// Observe is the exchange's shadow hook: it hands the decision to the
// shadow run in progress, if any, without blocking.
func (c *Console) Observe(ctx context.Context, decisionID string, in policy.Input, live policy.Decision, version string) {
	if s := c.shadow.Load(); s != nil {
		s.Observe(ctx, decisionID, in, live, version)
	}
}

// ShadowReport is the shadow run's report (nil when none was started).
func (c *Console) ShadowReport() *impact.ShadowReport {
	s := c.shadow.Load()
	if s == nil {
		return nil
	}
	r := s.Report()
	return &r
}

// Handler serves the console under Prefix.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{$}", c.overview)
	mux.HandleFunc("POST /console/audit/verify", c.verifyAudit)
	mux.HandleFunc("GET /console/rules", c.rules)
	mux.HandleFunc("GET /console/rules/module", c.module)
	mux.HandleFunc("GET /console/try", c.tryForm)
	mux.HandleFunc("POST /console/try", c.try)
	mux.HandleFunc("GET /console/impact", c.impactForm)
	mux.HandleFunc("POST /console/impact", c.impactStart)
	mux.HandleFunc("GET /console/impact/{id}", c.impactJob)
	mux.HandleFunc("GET /console/impact/{id}/diffs", c.impactDiffs)
	mux.HandleFunc("POST /console/impact/{id}/shadow", c.shadowStart)
	mux.HandleFunc("GET /console/shadow", c.shadowPage)
	mux.HandleFunc("GET /console/shadow/diffs", c.shadowDiffs)
	mux.HandleFunc("POST /console/shadow/stop", c.shadowStop)
	mux.HandleFunc("GET /console/subject", c.subjectForm)
	mux.HandleFunc("POST /console/subject", c.subject)
	mux.Handle("GET /console/static/", c.static)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "No such page.")
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusForbidden, "Cross-origin requests are refused.")
	}))
	inner := cop.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		// CSP reports come from the browser without a form token; they are
		// counted and logged, nothing else — and only from officers (below).
		if r.URL.Path == Prefix+"csp-report" && (r.Method == http.MethodPost || r.Method == http.MethodGet) {
			c.csp(w, r)
			return
		}
		// The stylesheet and the icon are the same for everyone (the 403
		// page uses them too); they carry no data.
		if strings.HasPrefix(r.URL.Path, Prefix+"static/") && r.Method == http.MethodGet {
			c.static.ServeHTTP(w, r)
			return
		}
		id, ok := c.officer(r)
		if !ok {
			c.forbidden(w, r)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), officerKey{}, id))
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, impact.MaxUpload+64<<10)
			if err := r.ParseMultipartForm(impact.MaxUpload + 64<<10); err != nil && !errors.Is(err, http.ErrNotMultipart) {
				c.fail(w, r, http.StatusBadRequest, "The form could not be read (too large?).")
				return
			}
			if !c.tokenOK(r) {
				c.fail(w, r, http.StatusForbidden, "The form's token is missing or wrong: reload the page and try again.")
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
}

type officerKey struct{}

// officer identifies the client certificate and checks the role.
func (c *Console) officer(r *http.Request) (string, bool) {
	reg := c.o.Registry.Load()
	if r.TLS == nil || reg == nil {
		return "", false
	}
	id, err := reg.Identify(r.TLS)
	if err != nil {
		return "", false
	}
	p, ok := reg.Participant(id)
	if !ok || p.Suspended || !p.HasRole(Role) {
		return id, false
	}
	return id, true
}

// secure sets the headers every answer carries.
func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "+
		"form-action 'self'; frame-ancestors 'none'; report-uri "+Prefix+"csp-report")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// token is the form token of the request's client certificate: an HMAC of
// its digest under the console's key, so it is bound to the certificate
// and worthless to anyone else.
func (c *Console) token(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	m := hmac.New(sha256.New, c.csrf)
	m.Write([]byte("xborder-console-form\x00"))
	m.Write(sum[:])
	return hex.EncodeToString(m.Sum(nil))
}

func (c *Console) tokenOK(r *http.Request) bool {
	want := c.token(r)
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// cspReportQuota bounds the CSP reports one officer's browser may send: a
// page with a violation reports it on each load, nothing more.
var cspReportQuota = ratelimit.Quota{Limit: 60, Window: time.Minute}

// csp takes a browser's CSP report (POST) or tells how many were taken
// (GET, for the browser test; no content). Both only for whom the console
// opens (a registered, unsuspended participant with the compliance role):
// anyone else of the CA would fill the log with warnings, or learn of
// officers' pages. Reports beyond an officer's quota are answered 429 and
// neither counted nor logged.
func (c *Console) csp(w http.ResponseWriter, r *http.Request) {
	id, ok := c.officer(r)
	if !ok {
		c.forbidden(w, r)
		return
	}
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(itoa(int(c.cspReports.Load())) + "\n"))
		return
	}
	if wait, err := c.cspQuota.Wait(r.Context(), id); err != nil || wait > 0 {
		w.Header().Set("Retry-After", itoa(int((wait+time.Second-1)/time.Second)))
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	c.cspReports.Add(1)
	c.log.Warn("content security policy violation reported by a browser", "officer", id)
	w.WriteHeader(http.StatusNoContent)
}
