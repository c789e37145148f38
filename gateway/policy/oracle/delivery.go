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
	c := &deliveryCheck{o: o, in: in, f: f, redacted: redacted, seen: map[Violation]bool{}}
	c.walk(delivered, in.Message, true, nil)
	c.redactedWasRemoved(delivered)
	c.gone(in.Message, delivered, true, nil)
	sortViolations(c.out)
	return c.out
}

// deliveryCheck holds one delivery while checkDelivery judges it. The same
// fault can be met at several leaves (array elements share a path), so
// each violation is kept once.
type deliveryCheck struct {
	o        *Oracle
	in       policy.Input
	f        *facts
	redacted []string
	out      []Violation
	seen     map[Violation]bool
}

func (c *deliveryCheck) add(v Violation) {
	if !c.seen[v] {
		c.seen[v] = true
		c.out = append(c.out, v)
	}
}

// changed notes that the delivery differs from what the sender sent at
// comps (PROTOCOL.md §4).
func (c *deliveryCheck) changed(comps []string, why string) {
	c.add(Violation{Rule: "PROTOCOL-4", Path: safePath(comps), Why: why})
}

// judge notes what the rules say of a leaf the recipient can read at comps.
func (c *deliveryCheck) judge(comps []string, container bool) {
	if v, bad := c.o.judge(c.in, c.f, comps, container); bad {
		c.add(v)
	}
}

// walk goes through the delivery d beside src, what the sender sent at the
// same place; sent says whether the sender sent anything there at all.
func (c *deliveryCheck) walk(d, src any, sent bool, comps []string) {
	switch x := d.(type) {
	case map[string]any:
		c.walkObject(x, src, sent, comps)
	case []any:
		c.walkArray(x, src, sent, comps)
	default:
		c.walkValue(x, src, sent, comps)
	}
}

func (c *deliveryCheck) walkObject(x map[string]any, src any, sent bool, comps []string) {
	sm, ok := src.(map[string]any)
	sent = c.container("an object", sent, ok, len(x) == 0, comps)
	for k, e := range x {
		sv, has := sm[k]
		c.walk(e, sv, sent && has, append(comps[:len(comps):len(comps)], k))
	}
}

// container judges an object or an array the recipient reads at comps:
// changed when the sender sent something else there (sameKind false) or
// nothing; an empty one is a leaf the recipient can read. It returns
// whether the members or elements below were sent.
func (c *deliveryCheck) container(what string, sent, sameKind, empty bool, comps []string) bool {
	if sent && !sameKind {
		c.changed(comps, what+" where the sender sent something else")
	}
	if !sent {
		c.changed(comps, what+" the sender did not send")
	}
	if empty && len(comps) > 0 {
		c.judge(comps, true)
	}
	return sent && sameKind
}

// walkArray compares elements by index; paths leave indices out, so every
// element is judged at the array's own path.
func (c *deliveryCheck) walkArray(x []any, src any, sent bool, comps []string) {
	sa, ok := src.([]any)
	sent = c.container("an array", sent, ok, len(x) == 0, comps)
	for i, e := range x {
		var sv any
		has := i < len(sa)
		if has {
			sv = sa[i]
		}
		c.walk(e, sv, sent && has, comps)
	}
}

func (c *deliveryCheck) walkValue(x, src any, sent bool, comps []string) {
	switch {
	case !sent:
		c.changed(comps, "a value the sender did not send")
	case !sameValue(x, src):
		c.changed(comps, "a value other than the one the sender sent")
	}
	if len(comps) > 0 {
		c.judge(comps, false)
	}
}

// redactedWasRemoved checks that redacted is exact one way: what it lists
// was in the message and is gone from the delivery.
func (c *deliveryCheck) redactedWasRemoved(delivered map[string]any) {
	sent, got := paths(c.in.Message), paths(delivered)
	for _, r := range c.redacted {
		switch {
		case !sent[r]:
			c.add(Violation{Rule: "R10", Path: safeDotted(r), Why: "redacted lists a path the message did not have"})
		case got[r]:
			c.add(Violation{Rule: "R10", Path: safeDotted(r), Why: "redacted lists a path that was delivered"})
		}
	}
}

// listed says whether redacted names the path p or a member above it.
func (c *deliveryCheck) listed(p string) bool {
	for _, r := range c.redacted {
		if p == r || strings.HasPrefix(p, r+".") {
			return true
		}
	}
	return false
}

// gone checks that redacted is exact the other way: every value of the
// message src that the delivery d lacks is under a path redacted lists.
// has says whether the delivery still holds the place of src.
func (c *deliveryCheck) gone(src, d any, has bool, comps []string) {
	switch x := src.(type) {
	case map[string]any:
		dm, _ := d.(map[string]any)
		for k, e := range x {
			dv, ok := dm[k]
			c.gone(e, dv, has && ok && dm != nil, append(comps[:len(comps):len(comps)], k))
		}
	case []any:
		da, _ := d.([]any)
		for i, e := range x {
			var dv any
			ok := i < len(da)
			if ok {
				dv = da[i]
			}
			c.gone(e, dv, has && ok, comps)
		}
	default:
		if !has && !c.listed(joinPath(comps)) {
			c.add(Violation{Rule: "R10", Path: safePath(comps), Why: "removed without being listed in redacted"})
		}
	}
}

// sortViolations orders violations by rule, then path, then reason, so
// that a report does not depend on the order maps were walked in.
func sortViolations(out []Violation) {
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
