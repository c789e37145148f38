package gateway

import (
	"context"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/console"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
)

// buildConsole makes the compliance console (served under /console/ on
// the exchange listener) and hangs the policy's change hook: every
// accepted or refused reload is audited, counted and kept for the
// console's history.
func (g *Gateway) buildConsole() error {
	g.consoleHistory = &console.History{}
	shadowDropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "xborder_shadow_dropped_total",
		Help: "Live decisions a shadow run did not compare because its candidate was behind (live decisions never wait for a candidate).",
	})
	stuck := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xborder_policy_evaluators_stuck",
		Help: "Live evaluators stuck in a built-in past their deadline (each replaced by a new one while it lasts).",
	}, func() float64 { return float64(policy.Evaluators().Stuck) })
	g.Metrics.Registry.MustRegister(shadowDropped, stuck)
	g.certificates = console.NewCertificates()
	c, err := console.New(console.Options{
		Registry: g.Registry, Policy: g.Policy, Audit: g.Store,
		VerifyAudit: func(ctx context.Context) (audit.Summary, error) {
			keys, err := envelope.ParseJWKS(g.Keys.JWKS)
			if err != nil {
				return audit.Summary{}, err
			}
			return audit.VerifyLive(ctx, g.Store, audit.KeyFunc(keys...))
		},
		Subject: func(ctx context.Context, ref string) (string, []audit.Entry, error) {
			h := g.Audit.SubjectHash(ref)
			entries, err := audit.Subject(ctx, g.Store, h)
			return h, entries, err
		},
		Depths:        g.Store.Depths,
		DeadLetters:   g.Store.DeadLetters,
		Certificates:  g.certificates,
		History:       g.consoleHistory,
		Worker:        g.worker,
		ShadowDropped: shadowDropped.Inc,
		Logger:        g.log,
	})
	if err != nil {
		return err
	}
	g.Console = c
	g.Metrics.PolicyInfo(g.Policy.Current().Version)
	g.Policy.OnChange(g.policyChanged)
	return nil
}

// policyChanged is the engine's OnChange hook: an audit entry (with the
// refusal's reason), the metrics, the console's history.
func (g *Gateway) policyChanged(old, new *policy.Bundle, err error) {
	g.consoleHistory.Record(old, new, err)
	g.Metrics.PolicyReloaded(old, new, err)
	e := audit.Entry{Kind: audit.KindPolicyChanged}
	if new != nil {
		e.PolicyVersion = new.Version
	}
	if err != nil {
		e.Kind = audit.KindPolicyRefused
		if rf, ok := err.(*policy.RefusedError); ok {
			e.PolicyVersion = rf.Version
		}
		e.Detail = strings.ToValidUTF8(err.Error(), "?")
		if len(e.Detail) > audit.MaxDetail {
			e.Detail = e.Detail[:audit.MaxDetail-3] + "..."
		}
	}
	g.record(context.Background(), e)
}

// withConsole serves the console under /console/ and everything else with
// the exchange API; the client certificate of every request is noted
// (for the console's list of certificates that expire soon).
func (g *Gateway) withConsole(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, g.Console.Handler())
	mux.Handle("/console", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	mux.Handle("/", api)
	return g.certificates.Wrap(mux)
}

// shadowReport is the shadow run's report for GET /v1/policy/shadow.
func (g *Gateway) shadowReport(context.Context) (any, bool) {
	r := g.Console.ShadowReport()
	if r == nil {
		return nil, false
	}
	return r, true
}
