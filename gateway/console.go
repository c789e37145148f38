package gateway

import (
	"context"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/console"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/ratelimit"
)

// buildConsole makes the compliance console (served under /console/ on
// the exchange listener) and hangs the policy's change hook: every
// accepted or refused reload is audited, counted and kept for the
// console's history.
func (g *Gateway) buildConsole(o options) error {
	g.consoleHistory = &console.History{}
	g.subjectQuota = &ratelimit.Limiter{Default: SubjectReports, Counter: &ratelimit.Memory{}}
	if c, ok := g.Store.(ratelimit.Counter); ok {
		g.subjectQuota.Counter = c // every replica counts against the same quota
	}
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
		SubjectLimit:  g.subjectLimit,
		Depths:        g.Store.Depths,
		DeadLetters:   g.Store.DeadLetters,
		Certificates:  g.certificates,
		History:       g.consoleHistory,
		Logger:        g.log,
		Inputs:        o.inputs,
		Worker:        g.worker,
		ShadowDropped: shadowDropped.Inc,
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

// WithImpactInputs gives the console's impact runs another generator of
// inputs than impact.Synth (for tests that must hold a run while they
// look at it).
func WithImpactInputs(f console.InputsFunc) Option {
	return func(o *options) { o.inputs = f }
}

// SubjectReports bounds the subject reports ("who received what about
// this person") a participant may ask for, over the API and the console
// together: each one names a person, and a burst of them is a search, not
// an accountability request.
var SubjectReports = ratelimit.Quota{Limit: 30, Window: time.Minute}

// subjectLimit counts one subject report of participant and says how long
// it must wait when its quota is spent.
func (g *Gateway) subjectLimit(ctx context.Context, participant string) (time.Duration, error) {
	return g.subjectQuota.Wait(ctx, "subject-report/"+participant)
}

// withConsole serves the console under /console/ and everything else with
// the exchange API; the client certificate of every request is noted
// (for the console's list of certificates that expire soon). The paths are
// dispatched as they came: no cleaning and no redirect (http.ServeMux
// would answer /v1/inbox/../messages/ack with a 307 to another endpoint),
// so that the API answers every path it does not serve with 404
// problem+json. A console path whose clean form leaves /console/ is the
// API's too.
func (g *Gateway) withConsole(api http.Handler) http.Handler {
	cons := g.Console.Handler()
	return g.certificates.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/console":
			http.Redirect(w, r, console.Prefix, http.StatusMovedPermanently)
		case strings.HasPrefix(p, console.Prefix) && strings.HasPrefix(path.Clean(p)+"/", console.Prefix):
			cons.ServeHTTP(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	}))
}

// shadowReport is the shadow run's report for GET /v1/policy/shadow.
func (g *Gateway) shadowReport(context.Context) (any, bool) {
	r := g.Console.ShadowReport()
	if r == nil {
		return nil, false
	}
	return r, true
}
