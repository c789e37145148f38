package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xborder/xborder/gateway/policy"
)

func (m *Metrics) registerPolicy() {
	m.PolicyVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "xborder_policy_info", Help: "The policy version in force (value 1).",
	}, []string{"version"})
	m.PolicyReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xborder_policy_reloads_total", Help: "Policy reloads by result: accepted or refused.",
	}, []string{"result"})
	m.Registry.MustRegister(m.PolicyVersion, m.PolicyReloads)
	for _, r := range []string{"accepted", "refused"} {
		m.PolicyReloads.WithLabelValues(r)
	}
}

// PolicyInfo sets the version in force.
func (m *Metrics) PolicyInfo(version string) {
	m.PolicyVersion.Reset()
	m.PolicyVersion.WithLabelValues(version).Set(1)
}

// PolicyReloaded is a policy.Engine OnChange hook.
func (m *Metrics) PolicyReloaded(_, new *policy.Bundle, err error) {
	if err != nil {
		m.PolicyReloads.WithLabelValues("refused").Inc()
		return
	}
	m.PolicyReloads.WithLabelValues("accepted").Inc()
	m.PolicyInfo(new.Version)
}
