package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	httppprof "net/http/pprof"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/store"
)

// Check is one readiness check: nil when ready. An error that is (or
// wraps) a *CheckError shows its Detail on /readyz; other errors show as
// "failing" alone (the log says why).
type Check func(ctx context.Context) error

// CheckError is a readiness check's answer that /readyz may show: what
// fails and by how much, in words fit for any caller on a private network
// (no paths, no personal data). Degraded: the gateway serves all the same
// (ready stays true) and says what is wrong.
type CheckError struct {
	Detail   string
	Degraded bool
}

func (e *CheckError) Error() string { return e.Detail }

// Metrics are the gateway's Prometheus collectors, on their own registry.
// Names and labels follow the Prometheus conventions (base units, _total
// counters, HTTP status as "code"); the names of the previous release are
// kept one more release as deprecated aliases (README "Operations").
type Metrics struct {
	Registry      *prometheus.Registry
	Requests      *prometheus.CounterVec   // xborder_http_requests_total by route, method and code
	Latency       *prometheus.HistogramVec // xborder_http_request_duration_seconds by route, method and code
	Decisions     *prometheus.CounterVec   // by allow: each decision once
	DecisionRules *prometheus.CounterVec   // by allow and rule: a decision once per rule it names
	Deliveries    *prometheus.CounterVec   // by outcome: delivered, retry, dead_lettered
	AuditFailures prometheus.Counter
	PolicyVersion *prometheus.GaugeVec   // xborder_policy_info{version}: 1 for the version in force
	PolicyReloads *prometheus.CounterVec // by result: accepted, refused

	// Deprecated aliases, to be removed in the next release.
	oldRequests *prometheus.CounterVec   // xborder_requests_total by route and status
	oldLatency  *prometheus.HistogramVec // xborder_request_seconds by route
	Quarantined *prometheus.CounterVec   // store records that could not be decoded, by kind
	// StoreDamaged is 1 while the gateway serves a store its start-up
	// check found damaged (serve_damaged_store).
	StoreDamaged prometheus.Gauge
	// Reapplied counts the changes the journal made again after a switch
	// of Redis primary erased them, by operation.
	Reapplied *prometheus.CounterVec
}

// DeliveryOutcomes are the values of xborder_deliveries_total's outcome
// label; each series exists from the start, at zero.
var DeliveryOutcomes = []string{"delivered", "retry", "dead_lettered"}

var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5}

// NewMetrics registers the collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_http_requests_total", Help: "Exchange API requests by route, method and HTTP status code.",
		}, []string{"route", "method", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xborder_http_request_duration_seconds", Help: "Exchange API request duration by route, method and HTTP status code.",
			Buckets: latencyBuckets,
		}, []string{"route", "method", "code"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_decisions_total", Help: "Policy decisions by outcome, each decision counted once.",
		}, []string{"allow"}),
		DecisionRules: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_decision_rules_total", Help: "Rules named by policy decisions, by outcome and rule (a decision counts once for each rule it names).",
		}, []string{"allow", "rule"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_deliveries_total", Help: "Push delivery attempts by outcome.",
		}, []string{"outcome"}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xborder_audit_failures_total", Help: "Audit entries that could not be appended.",
		}),
		oldRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_requests_total", Help: "Deprecated, removed in the next release: use xborder_http_requests_total (label code).",
		}, []string{"route", "status"}),
		oldLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xborder_request_seconds", Help: "Deprecated, removed in the next release: use xborder_http_request_duration_seconds.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
	}
	m.registerPolicy()
	// Known label values start at zero, so that rate() and alerts see the
	// series before the first event.
	for _, o := range DeliveryOutcomes {
		m.Deliveries.WithLabelValues(o)
	}
	for _, a := range []string{"true", "false"} {
		m.Decisions.WithLabelValues(a)
	}
	b := ReadBuild()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xborder_build_info", Help: "Always 1; the labels describe the running binary.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	m.Quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xborder_store_quarantined_total", Help: "Store records that could not be decoded and were moved to quarantine, by kind.",
	}, []string{"kind"})
	for _, k := range []string{"message", "delivery"} {
		m.Quarantined.WithLabelValues(k)
	}
	m.StoreDamaged = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "xborder_store_damaged", Help: "1 while the gateway serves a store its start-up check found damaged (serve_damaged_store), else 0.",
	})
	m.Reapplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xborder_store_reapplied_total", Help: "Changes this gateway acknowledged that a switch of Redis primary erased and its journal made again, by operation.",
	}, []string{"op"})
	for _, op := range []string{"accept", "record_denial", "ack", "dead_letter", "requeue", "withdraw_consent", "purge", "append"} {
		m.Reapplied.WithLabelValues(op)
	}
	m.Registry.MustRegister(m.Requests, m.Latency, m.Decisions, m.DecisionRules, m.Deliveries, m.AuditFailures,
		m.Quarantined, m.StoreDamaged, m.Reapplied, m.oldRequests, m.oldLatency, buildInfo,
		// The Go collector's defaults, plus the live heap after the last
		// collection (go_gc_heap_live_bytes): the memory the gateway keeps,
		// which the heap's current size hides between cycles.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// QueueDepths exports the queued deliveries per recipient, read at scrape time.
func (m *Metrics) QueueDepths(depths func(ctx context.Context) (map[string]int, error)) {
	m.Registry.MustRegister(&depthCollector{depths: depths, desc: prometheus.NewDesc(
		"xborder_queue_depth", "Deliveries waiting per recipient.", []string{"recipient"}, nil)})
}

type depthCollector struct {
	depths func(ctx context.Context) (map[string]int, error)
	desc   *prometheus.Desc
}

func (d *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := d.depths(ctx)
	if err != nil {
		return
	}
	for r, n := range m {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(n), r)
	}
}

// Observe is gin middleware counting requests by route template and status.
func (m *Metrics) Observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	code, took := strconv.Itoa(c.Writer.Status()), time.Since(start).Seconds()
	method := MethodLabel(c.Request.Method)
	m.Requests.WithLabelValues(route, method, code).Inc()
	m.Latency.WithLabelValues(route, method, code).Observe(took)
	m.oldRequests.WithLabelValues(route, code).Inc()
	m.oldLatency.WithLabelValues(route).Observe(took)
}

// MethodLabel is the request method as a metric label: one of HTTP's
// registered methods, or "other". A client may send any token as a method,
// and a label taken from it unchecked would let anyone create series without
// bound.
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}

// Decision counts one decision once, and each rule it names.
func (m *Metrics) Decision(allow bool, rules []string) {
	a := strconv.FormatBool(allow)
	m.Decisions.WithLabelValues(a).Inc()
	for _, r := range rules {
		m.DecisionRules.WithLabelValues(a, r).Inc()
	}
}

// Ops returns the operator listener's handler: /healthz (the process runs),
// /readyz (every check passes) and /metrics.
// DeadLetterAdmin lists and re-queues dead letters (operators only).
type DeadLetterAdmin interface {
	DeadLetters(ctx context.Context) ([]store.Delivery, error)
	Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error
}

// DeadLetterList is the listing of GET /deadletters (and of `xborder
// deadletters` reading the store itself): ids and counts, no content.
func DeadLetterList(ds []store.Delivery) map[string]any {
	out := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		out = append(out, map[string]any{"delivery_id": d.ID, "recipient": d.Recipient, "message_id": d.MessageID,
			"message_from": d.MessageFrom, "attempts": d.Attempts, "dead_lettered_at": d.DeadLetteredAt})
	}
	return map[string]any{"dead_letters": out}
}

// OpsOptions configure the operator listener.
type OpsOptions struct {
	Metrics     *Metrics
	Checks      map[string]Check
	Pprof       bool
	DeadLetters DeadLetterAdmin
	Logger      *slog.Logger
	// Token is the operator's bearer token; without one, every endpoint
	// but /healthz, /readyz and /metrics is refused (opsauth.go).
	Token       []byte
	AuditExport AuditExporter
	Subject     SubjectReporter
}

// Ops returns the operator listener's handler: /healthz (the process runs),
// /readyz (every check passes) and /metrics for loopback and private
// networks; with the operator token, the dead-letter queue (GET
// /deadletters, POST /deadletters/{recipient}/{delivery_id}/requeue), the
// audit log (GET /audit/export, POST /audit/subject) and pprof.
func Ops(o OpsOptions) http.Handler {
	m, checks, pprof := o.Metrics, o.Checks, o.Pprof
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	// As on the exchange listener: no path cleaning, so a near-miss path
	// answers 404 problem+json and never redirects to another endpoint.
	r.RedirectTrailingSlash, r.RedirectFixedPath, r.RemoveExtraSlash = false, false, false
	r.HandleMethodNotAllowed = true
	refuse := func(c *gin.Context, p Problem) { writeProblem(c, o.Logger, p, nil) }
	r.NoRoute(func(c *gin.Context) { refuse(c, problem(exchange.CodeNotFound, "no such endpoint")) })
	r.NoMethod(func(c *gin.Context) { refuse(c, problem(CodeMethodNotAllowed, "method not allowed here")) })
	open := r.Group("/", privateOnly(refuse))
	admin := r.Group("/", opsAuth(o.Token, refuse))
	auditRoutes(admin, o)
	if dl := o.DeadLetters; dl != nil {
		admin.GET("/deadletters", func(c *gin.Context) {
			ds, err := dl.DeadLetters(c.Request.Context())
			if err != nil {
				writeProblem(c, o.Logger, problem(exchange.CodeUnavailable, "the store cannot be read now"), err)
				return
			}
			c.JSON(http.StatusOK, DeadLetterList(ds))
		})
		admin.POST("/deadletters/:recipient/:id/requeue", func(c *gin.Context) {
			err := dl.Requeue(c.Request.Context(), c.Param("recipient"), c.Param("id"), time.Now())
			switch {
			case errors.Is(err, store.ErrNotFound):
				writeProblem(c, o.Logger, problem(exchange.CodeNotFound, "no such dead letter"), nil)
			case err != nil:
				writeProblem(c, o.Logger, problem(exchange.CodeUnavailable, "the store cannot be written now"), err)
			default:
				o.Logger.Info("dead letter requeued", "recipient", c.Param("recipient"), "delivery_id", c.Param("id"), "remote", c.ClientIP())
				c.Status(http.StatusNoContent)
			}
		})
	}
	if pprof {
		// Profiling, for operators on the (loopback) operator listener only.
		admin.Any("/debug/pprof/*name", gin.WrapF(func(w http.ResponseWriter, req *http.Request) {
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
	open.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	open.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		out, details := gin.H{}, gin.H{}
		ready := true
		for name, check := range checks {
			err := check(ctx)
			if err == nil {
				out[name] = "ok"
				continue
			}
			var ce *CheckError
			if errors.As(err, &ce) {
				details[name] = ce.Detail
				if ce.Degraded {
					out[name] = "degraded"
					continue
				}
			}
			ready = false
			out[name] = "failing"
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		body := gin.H{"ready": ready, "checks": out}
		if len(details) > 0 {
			body["details"] = details
		}
		c.JSON(status, body)
	})
	if m != nil {
		open.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})))
	}
	return r
}
