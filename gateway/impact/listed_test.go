package impact_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
)

// A report shows the catalogue's rule ids and DOMAIN's paths, and nothing
// a candidate made up; its groups stay bounded however many rule lists a
// candidate invents.
func TestTallyShowsOnlyTheCatalogue(t *testing.T) {
	t.Parallel()
	listed := impact.ListedOf(mustLive(t))
	got := listed.Outcome(impact.Outcome{Rules: []string{"R6", "ABENOVA", "R99", "R10"},
		Redact: []string{"subject.names", "2018-04-12", "subject.names.primary", "x.y", "purpose", "ABENOVA"}})
	if want := []string{"R6", impact.UnlistedRule, "R10"}; !slices.Equal(got.Rules, want) {
		t.Errorf("rules %v, want %v", got.Rules, want)
	}
	if want := []string{impact.UnlistedField, "purpose", "subject.names", "subject.names.primary"}; !slices.Equal(got.Redact, want) {
		t.Errorf("redact %v, want %v", got.Redact, want)
	}

	tally := impact.NewTally("shadow", 10).Only(listed)
	in := policy.Input{Message: map[string]any{"purpose": "a name of the sender's", "type": "referral"}}
	before := impact.Outcome{Allow: true, Rules: []string{"R10"}, Redact: []string{}}
	// Every order of three of the catalogue's rules: far more rule lists
	// than groups a report keeps.
	ids := []string{"R2", "R3", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12"}
	n := 0
	for _, a := range ids {
		for _, b := range ids {
			for _, c := range ids {
				tally.Add(strconv.Itoa(n), "", in, before, impact.Outcome{Rules: []string{a, b, c, "NAME" + strconv.Itoa(n)}, Redact: []string{}}, time.Now())
				n++
			}
		}
	}
	rep := tally.Report()
	if len(rep.ByRules) > impact.MaxGroups+1 || impact.Find(rep.ByRules, impact.OtherGroups).Changed == 0 {
		t.Errorf("%d rule groups for %d inputs, the bound is %d", len(rep.ByRules), n, impact.MaxGroups)
	}
	if rep.Changed != n || len(rep.Diffs) != 10 || rep.DiffsDropped != n-10 {
		t.Errorf("changed %d, diffs %d, dropped %d", rep.Changed, len(rep.Diffs), rep.DiffsDropped)
	}
	for _, d := range rep.Diffs {
		if d.Purpose != policy.Masked || d.Type != "referral" || !slices.Contains(d.After.Rules, impact.UnlistedRule) {
			t.Errorf("a difference shows %q %q %v", d.Purpose, d.Type, d.After.Rules)
		}
	}
}
