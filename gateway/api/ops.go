package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	httppprof "net/http/pprof"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check: nil when ready.
type Check func(ctx context.Context) error

// Metrics are the gateway's Prometheus collectors, on their own registry.
type Metrics struct {
	Registry  *prometheus.Registry
	Requests  *prometheus.CounterVec   // by route and status
	Latency   *prometheus.HistogramVec // by route
	Decisions *prometheus.CounterVec   // by allow and rule
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
	m.Registry.MustRegister(m.Requests, m.Latency, m.Decisions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
func Ops(m *Metrics, checks map[string]Check, pprof bool) http.Handler {
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
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
