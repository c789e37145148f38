package impact

import (
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
)

// Parties are the registry's participants as decision inputs see them,
// none suspended (the generator suspends some itself).
func Parties(ps []*trust.Participant) []policy.Party {
	out := make([]policy.Party, 0, len(ps))
	for _, p := range ps {
		out = append(out, policy.Party{ID: p.ID, Kind: p.Kind, Country: p.Country, Roles: append([]string{}, p.Roles...)})
	}
	return out
}

// DemoParties are the demo federation of DOMAIN.md §8.
func DemoParties() []policy.Party {
	var out []policy.Party
	for _, s := range pki.DemoFederation() {
		out = append(out, policy.Party{ID: s.ID, Kind: s.Kind, Country: s.Country, Roles: append([]string{}, s.Roles...)})
	}
	return out
}
