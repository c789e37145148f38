package impact

import (
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/synth"
)

// Synth is the source of generated inputs of an impact run: the adversarial
// generator of the minimisation property suite (gateway/policy/synth),
// reading the policy in force's data for its catalogue, drawing parties
// from the registry, every purpose and message type, role pair, age band
// and consent case. Messages the gateway refuses before the policy (a
// member name outside the protocol's alphabet) never reach a decision and
// are skipped. Synthetic inputs hold no real person, so examples may be
// shown.
func Synth(seed int64, live *policy.Bundle, parties []policy.Party, now time.Time) (Source, error) {
	spec, err := synth.Load(live.DataJSON())
	if err != nil {
		return nil, err
	}
	g := synth.New(seed, spec, parties, synth.Options{Now: now})
	return SourceFunc(func() Case {
		for {
			c := g.Next()
			if !c.Invalid {
				return Case{Input: c.Input, Label: c.Label}
			}
		}
	}), nil
}
