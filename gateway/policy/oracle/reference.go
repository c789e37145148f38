package oracle

import "github.com/xborder/xborder/gateway/policy"

// Minimise returns the delivery this oracle accepts with the fewest
// removals, and its redacted list: every member whose leaves the rules keep
// from the recipient is removed whole, at the level the rule names (a
// section, a member of a structured field, an unlisted member). It is a
// reference to compare a gateway with, not the gateway's redactor, and it
// says nothing of whether the message may go at all (MustDeny does).
func (o *Oracle) Minimise(in policy.Input) (delivered map[string]any, redacted []string) {
	f := o.facts(in)
	var keep func(v any, comps []string) any
	keep = func(v any, comps []string) any {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				c := append(comps[:len(comps):len(comps)], k)
				if len(c) == 1 && o.nothingPasses(f, k) {
					// A section whose allow-list is empty goes whole, as
					// the record of a consent.withdrawal (PROTOCOL.md §5.1).
					redacted = append(redacted, k)
					continue
				}
				if o.memberBad(in, f, c, e) {
					redacted = append(redacted, joinPath(c))
					continue
				}
				out[k] = keep(e, c)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = keep(e, comps)
			}
			return out
		}
		return v
	}
	delivered = keep(in.Message, nil).(map[string]any)
	return delivered, sortedUnique(redacted)
}

// nothingPasses says whether the allow-list lets nothing inside the
// section sec (subject or record) through.
func (o *Oracle) nothingPasses(f *facts, sec string) bool {
	if sec != "subject" && sec != "record" {
		return false
	}
	a, ok := o.allowList(f)
	if !ok {
		return true
	}
	if sec == "subject" {
		return len(a.subject) == 0
	}
	return len(a.record) == 0
}

// memberBad says whether the member at comps, holding v, must go whole:
// judged as the container it is, and as the leaf each value directly in
// it (through arrays) is.
func (o *Oracle) memberBad(in policy.Input, f *facts, comps []string, v any) bool {
	if _, _, bad := o.judgeAt(in, f, comps, isContainer(v)); bad {
		return true
	}
	var scalarIn func(v any) bool
	scalarIn = func(v any) bool {
		a, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range a {
			if !isContainer(e) || scalarIn(e) {
				return true
			}
		}
		return false
	}
	if scalarIn(v) {
		_, _, bad := o.judgeAt(in, f, comps, false)
		return bad
	}
	return false
}

// isContainer says whether v is an object or an array: only an empty one
// is a leaf, but a member holding one is judged as a container.
func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}
