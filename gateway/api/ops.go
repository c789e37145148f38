package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
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

// Check is one readiness check: nil when ready.
type Check func(ctx context.Context) error

// Metrics are the gateway's Prometheus collectors, on their own registry.
type Metrics struct {
	Registry      *prometheus.Registry
	Requests      *prometheus.CounterVec   // by route and status
	Latency       *prometheus.HistogramVec // by route
	Decisions     *prometheus.CounterVec   // by allow and rule
	Deliveries    *prometheus.CounterVec   // by outcome: delivered, retry, dead_lettered
	AuditFailures prometheus.Counter
	Quarantined   *prometheus.CounterVec // store records that could not be decoded, by kind
}

// NewMetrics registers the collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_requests_total", Help: "Exchange API requests by route and HTTP status.",
		}, []string{"route", "status"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xborder_request_seconds", Help: "Exchange API latency by route.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xborder_decisions_total", Help: "Policy decisions by outcome and rule.",
		}, []string{"allow", "rule"}),
	}
	m.Deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xborder_deliveries_total", Help: "Delivery attempts by outcome.",
	}, []string{"outcome"})
	m.AuditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xborder_audit_failures_total", Help: "Audit entries of events other than store changes (policy changes) that could not be appended.",
	})
	m.Quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xborder_store_quarantined_total", Help: "Store records that could not be decoded and were moved to quarantine, by kind.",
	}, []string{"kind"})
	m.Registry.MustRegister(m.Requests, m.Latency, m.Decisions, m.Deliveries, m.AuditFailures, m.Quarantined,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	m.Requests.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Inc()
	m.Latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// Decision counts one decision.
func (m *Metrics) Decision(allow bool, rules []string) {
	a := strconv.FormatBool(allow)
	if len(rules) == 0 {
		m.Decisions.WithLabelValues(a, "").Inc()
	}
	for _, r := range rules {
		m.Decisions.WithLabelValues(a, r).Inc()
	}
}

// Ops returns the operator listener's handler: /healthz (the process runs),
// /readyz (every check passes) and /metrics.
// DeadLetterAdmin lists and re-queues dead letters (operators only).
type DeadLetterAdmin interface {
	DeadLetters(ctx context.Context) ([]store.Delivery, error)
	Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error
}

// OpsOptions configure the operator listener.
type OpsOptions struct {
	Metrics     *Metrics
	Checks      map[string]Check
	Pprof       bool
	DeadLetters DeadLetterAdmin
	Logger      *slog.Logger
}

// Ops returns the operator listener's handler: /healthz (the process runs),
// /readyz (every check passes), /metrics, and the dead-letter queue
// (GET /deadletters, POST /deadletters/{recipient}/{delivery_id}/requeue).
func Ops(o OpsOptions) http.Handler {
	m, checks, pprof := o.Metrics, o.Checks, o.Pprof
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	if dl := o.DeadLetters; dl != nil {
		r.GET("/deadletters", func(c *gin.Context) {
			ds, err := dl.DeadLetters(c.Request.Context())
			if err != nil {
				writeProblem(c, o.Logger, problem(exchange.CodeUnavailable, "the store cannot be read now"), err)
				return
			}
			out := make([]gin.H, 0, len(ds))
			for _, d := range ds {
				out = append(out, gin.H{"delivery_id": d.ID, "recipient": d.Recipient, "message_id": d.MessageID,
					"message_from": d.MessageFrom, "attempts": d.Attempts, "dead_lettered_at": d.DeadLetteredAt})
			}
			c.JSON(http.StatusOK, gin.H{"dead_letters": out})
		})
		r.POST("/deadletters/:recipient/:id/requeue", func(c *gin.Context) {
			err := dl.Requeue(c.Request.Context(), c.Param("recipient"), c.Param("id"), time.Now())
			switch {
			case errors.Is(err, store.ErrNotFound):
				writeProblem(c, o.Logger, problem(exchange.CodeNotFound, "no such dead letter"), nil)
			case err != nil:
				writeProblem(c, o.Logger, problem(exchange.CodeUnavailable, "the store cannot be written now"), err)
			default:
				o.Logger.Info("dead letter requeued", "recipient", c.Param("recipient"), "delivery_id", c.Param("id"))
				c.Status(http.StatusNoContent)
			}
		})
	}
	if pprof {
		// Profiling, for operators on the (loopback) operator listener only.
		r.Any("/debug/pprof/*name", gin.WrapF(func(w http.ResponseWriter, req *http.Request) {
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
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		out := gin.H{}
		ready := true
		for name, check := range checks {
			if err := check(ctx); err != nil {
				ready = false
				out[name] = "failing"
				continue
			}
			out[name] = "ok"
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		c.JSON(status, gin.H{"ready": ready, "checks": out})
	})
	if m != nil {
		r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})))
	}
	return r
}
