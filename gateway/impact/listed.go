package impact

import (
	"slices"
	"sort"
	"strconv"

	"github.com/xborder/xborder/gateway/policy"
)

// What a report shows in place of a rule id or a field path it does not
// know.
const (
	UnlistedRule  = "an unlisted rule"
	UnlistedField = "an unlisted field"
	// OtherGroups is the key of the group that gathers what no longer fits
	// once a report has MaxGroups groups of one kind.
	OtherGroups = "(other changes)"
)

// MaxGroups bounds the groups of one kind a report keeps: the keys come
// from a candidate's answers (its rule lists), and a day of shadow must
// not grow them without bound.
const MaxGroups = 200

// Listed is what a report may show of a decision: the rule ids of the
// rule catalogue of the policy in force, and the field paths of DOMAIN.md
// (policy.ListedPath). A candidate writes its reasons and removals as it
// likes — a rule id or a removed "path" may carry a name or a birth date
// read from its input, live traffic in shadow — so a report shows every
// other id and path as UnlistedRule or UnlistedField, the masking the
// decision log does. A nil Listed knows the rules of DOMAIN.md §6
// (R1–R16).
type Listed struct {
	rules map[string]bool
}

// ListedOf is the catalogue of live: the rule ids its modules' # METADATA
// annotations declare (policy.Bundle.RuleMap), and R1, the rule of a
// decision the policy could not make (policy.Deny).
func ListedOf(live any) *Listed {
	l := &Listed{rules: map[string]bool{"R1": true}}
	rm, ok := live.(ruleMapper)
	if !ok || rm == nil || isNilBundle(live) {
		return nil
	}
	refs, err := rm.RuleMap()
	if err != nil {
		return nil
	}
	for _, r := range refs {
		l.rules[r.Rule] = true
	}
	return l
}

// ruleMapper is what has a rule catalogue: the policy in force (a
// *policy.Bundle). A candidate behind a worker has none, so its report is
// masked by DOMAIN's rules.
type ruleMapper interface {
	RuleMap() ([]policy.RuleRef, error)
}

func isNilBundle(v any) bool {
	b, ok := v.(*policy.Bundle)
	return ok && b == nil
}

func (l *Listed) rule(id string) bool {
	if l == nil {
		n, err := strconv.Atoi(id[min(1, len(id)):])
		return len(id) > 1 && id[0] == 'R' && err == nil && n >= 1 && n <= 16 && "R"+strconv.Itoa(n) == id
	}
	return l.rules[id]
}

// Outcome returns o with every rule id outside the catalogue shown as
// UnlistedRule and every path outside DOMAIN's as UnlistedField (each
// once).
func (l *Listed) Outcome(o Outcome) Outcome {
	out := Outcome{Allow: o.Allow, Error: o.Error, Rules: make([]string, 0, len(o.Rules)), Redact: make([]string, 0, len(o.Redact))}
	for _, r := range o.Rules {
		if !l.rule(r) {
			r = UnlistedRule
		}
		if !slices.Contains(out.Rules, r) {
			out.Rules = append(out.Rules, r)
		}
	}
	for _, p := range o.Redact {
		if !policy.ListedPath(p) {
			p = UnlistedField
		}
		if !slices.Contains(out.Redact, p) {
			out.Redact = append(out.Redact, p)
		}
	}
	sort.Strings(out.Redact)
	return out
}

// diff masks what a difference shows of its input: a purpose or type
// outside DOMAIN's catalogue is the sender's word (live traffic in
// shadow), shown as policy.Masked.
func (l *Listed) diff(d Diff) Diff {
	d.Before, d.After = l.Outcome(d.Before), l.Outcome(d.After)
	if d.Purpose != "(none)" {
		d.Purpose = policy.Enum(d.Purpose, policy.KnownPurpose)
	}
	if d.Type != "(none)" {
		d.Type = policy.Enum(d.Type, policy.KnownType)
	}
	return d
}

// boundedGroup is group, but once m holds MaxGroups keys a new key is
// counted under OtherGroups.
func boundedGroup(m map[string]*Group, key string) *Group {
	if _, ok := m[key]; !ok && len(m) >= MaxGroups {
		key = OtherGroups
	}
	return group(m, key)
}

// Only makes the tally show what l lists, and nothing else; it returns t.
func (t *Tally) Only(l *Listed) *Tally {
	t.mu.Lock()
	t.listed = l
	t.mu.Unlock()
	return t
}
