package oracle

import (
	"sort"
	"strings"

	"github.com/xborder/xborder/gateway/policy"
)

// checkDelivery judges what the recipient read: every leaf it can read (a
// value, or an empty object or array) must be one the rules let through and
// the value the sender sent at the same place (R10 and the rules that
// narrow it; PROTOCOL.md §4); redacted must list exactly what was removed
// (R10).
func (o *Oracle) checkDelivery(in policy.Input, f *facts, delivered map[string]any, redacted []string) []Violation {
	var out []Violation
	seen := map[Violation]bool{}
	add := func(v Violation) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	changed := func(comps []string, why string) {
		add(Violation{Rule: "PROTOCOL-4", Path: safePath(comps), Why: why})
	}
	judge := func(comps []string, container bool) {
		if v, bad := o.judge(in, f, comps, container); bad {
			add(v)
		}
	}

	var walk func(d, src any, sent bool, comps []string)
	walk = func(d, src any, sent bool, comps []string) {
		switch x := d.(type) {
		case map[string]any:
			sm, ok := src.(map[string]any)
			if sent && !ok {
				changed(comps, "an object where the sender sent something else")
			}
			if !sent {
				changed(comps, "an object the sender did not send")
			}
			sent = sent && ok
			if len(x) == 0 && len(comps) > 0 {
				judge(comps, true)
			}
			for k, e := range x {
				sv, has := sm[k]
				walk(e, sv, sent && has, append(comps[:len(comps):len(comps)], k))
			}
		case []any:
			sa, ok := src.([]any)
			if sent && !ok {
				changed(comps, "an array where the sender sent something else")
			}
			if !sent {
				changed(comps, "an array the sender did not send")
			}
			sent = sent && ok
			if len(x) == 0 && len(comps) > 0 {
				judge(comps, true)
			}
			for i, e := range x {
				var sv any
				has := i < len(sa)
				if has {
					sv = sa[i]
				}
				walk(e, sv, sent && has, comps)
			}
		default:
			switch {
			case !sent:
				changed(comps, "a value the sender did not send")
			case !sameValue(x, src):
				changed(comps, "a value other than the one the sender sent")
			}
			if len(comps) > 0 {
				judge(comps, false)
			}
		}
	}
	walk(delivered, in.Message, true, nil)

	// redacted is exact: what it lists was in the message and is gone.
	sent, got := paths(in.Message), paths(delivered)
	for _, r := range redacted {
		switch {
		case !sent[r]:
			add(Violation{Rule: "R10", Path: safeDotted(r), Why: "redacted lists a path the message did not have"})
		case got[r]:
			add(Violation{Rule: "R10", Path: safeDotted(r), Why: "redacted lists a path that was delivered"})
		}
	}
	// ... and every value that is gone is under a path it lists.
	listed := func(p string) bool {
		for _, r := range redacted {
			if p == r || strings.HasPrefix(p, r+".") {
				return true
			}
		}
		return false
	}
	var gone func(src, d any, has bool, comps []string)
	gone = func(src, d any, has bool, comps []string) {
		switch x := src.(type) {
		case map[string]any:
			dm, _ := d.(map[string]any)
			for k, e := range x {
				dv, ok := dm[k]
				gone(e, dv, has && ok && dm != nil, append(comps[:len(comps):len(comps)], k))
			}
		case []any:
			da, _ := d.([]any)
			for i, e := range x {
				var dv any
				ok := i < len(da)
				if ok {
					dv = da[i]
				}
				gone(e, dv, has && ok, comps)
			}
		default:
			if !has && !listed(joinPath(comps)) {
				add(Violation{Rule: "R10", Path: safePath(comps), Why: "removed without being listed in redacted"})
			}
		}
	}
	gone(in.Message, delivered, true, nil)

	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Why < b.Why
	})
	return out
}

// paths returns the path of every object member at any depth of v, array
// indices left out.
func paths(v any) set {
	s := set{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				s[p] = true
				walk(e, p)
			}
		case []any:
			for _, e := range x {
				walk(e, prefix)
			}
		}
	}
	walk(v, "")
	return s
}
