package exchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/xborder/xborder/gateway/policy"
)

// Field paths name a member of the message by the member names on the way
// to it, joined by "." ("subject.names.primary"). Every member name inside
// subject, record and consent matches envelope.MemberNamePattern, which has
// no dot, so a path splits into its segments one way only. A segment
// applied to an array applies to every object in it ("subject.documents.
// number" is the number of every document).

// Redact returns msg without the fields named by the paths. The input is
// not modified: objects and arrays on a redacted path are copied,
// everything else is shared with the input.
func Redact(msg map[string]any, paths []string) map[string]any {
	if len(paths) == 0 {
		return msg
	}
	out := shallow(msg)
	for _, p := range paths {
		removePath(out, strings.Split(p, "."))
	}
	return out
}

func shallow(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// removePath deletes the path from m, which the caller owns; objects and
// arrays along the way are copied before they are changed.
func removePath(m map[string]any, path []string) {
	if len(path) == 1 {
		delete(m, path[0])
		return
	}
	if c := without(m[path[0]], path[1:]); c != nil {
		m[path[0]] = c
	}
}

// without returns a copy of v without path, or nil when v has nothing on
// that path.
func without(v any, path []string) any {
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t[path[0]]; !ok {
			return nil
		}
		c := shallow(t)
		removePath(c, path)
		return c
	case []any:
		var c []any
		for i, e := range t {
			if ne := without(e, path); ne != nil {
				if c == nil {
					c = append([]any(nil), t...)
				}
				c[i] = ne
			}
		}
		if c == nil {
			return nil
		}
		return c
	}
	return nil
}

// ErrNotMinimised is the fault CheckDelivered finds: the copy about to be
// sealed holds something the policy did not allow. It is never expected;
// when it happens, the message is denied (R1) instead of delivered.
var ErrNotMinimised = errors.New("exchange: the delivered copy is not what the policy allowed")

// CheckDelivered checks the copy of a message that is about to be sealed
// for a recipient against the message the policy evaluated and its
// decision's redactions, independently of how the copy was made:
//
//   - its top-level members are protocol fields;
//   - every member under subject, record and consent, at any depth, is
//     present in the evaluated message with the same value, and neither it
//     nor any member on its way is on the redact list;
//   - every path on the redact list is absent from it.
//
// It names paths in its error only by the known DOMAIN words of Categories
// ("*" for any other), so that the error can be logged.
func CheckDelivered(evaluated, delivered map[string]any, redact []string) error {
	removed := make(map[string]bool, len(redact))
	for _, p := range redact {
		removed[p] = true
	}
	for k, v := range delivered {
		if !policy.TopLevelFields[k] {
			return fmt.Errorf("%w: top-level member %s", ErrNotMinimised, policy.LogPath(k))
		}
		if removed[k] {
			return fmt.Errorf("%w: %s was removed", ErrNotMinimised, policy.LogPath(k))
		}
		ev, ok := evaluated[k]
		if !ok {
			return fmt.Errorf("%w: %s was not in the message", ErrNotMinimised, policy.LogPath(k))
		}
		switch k {
		case "subject", "record", "consent":
			if err := sameWithin(ev, v, k, removed); err != nil {
				return err
			}
		default:
			if !sameScalar(ev, v) {
				return fmt.Errorf("%w: %s differs", ErrNotMinimised, k)
			}
		}
	}
	for _, p := range redact {
		if present(delivered, strings.Split(p, ".")) {
			return fmt.Errorf("%w: %s is still there", ErrNotMinimised, policy.LogPath(p))
		}
	}
	return nil
}

// sameWithin walks the delivered value d beside the evaluated value e at
// path.
func sameWithin(e, d any, path string, removed map[string]bool) error {
	switch dt := d.(type) {
	case map[string]any:
		et, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: %s changed type", ErrNotMinimised, policy.LogPath(path))
		}
		for k, dv := range dt {
			p := path + "." + k
			if removed[p] {
				return fmt.Errorf("%w: %s was removed", ErrNotMinimised, policy.LogPath(p))
			}
			ev, ok := et[k]
			if !ok {
				return fmt.Errorf("%w: %s was not in the message", ErrNotMinimised, policy.LogPath(p))
			}
			if err := sameWithin(ev, dv, p, removed); err != nil {
				return err
			}
		}
		return nil
	case []any:
		et, ok := e.([]any)
		if !ok || len(et) != len(dt) {
			return fmt.Errorf("%w: %s changed", ErrNotMinimised, policy.LogPath(path))
		}
		for i := range dt {
			if err := sameWithin(et[i], dt[i], path, removed); err != nil {
				return err
			}
		}
		return nil
	}
	if !sameScalar(e, d) {
		return fmt.Errorf("%w: %s differs", ErrNotMinimised, policy.LogPath(path))
	}
	return nil
}

// sameScalar compares two decoded JSON scalars (json.Number by its text).
func sameScalar(a, b any) bool {
	switch at := a.(type) {
	case nil:
		return b == nil
	case string:
		bt, ok := b.(string)
		return ok && at == bt
	case bool:
		bt, ok := b.(bool)
		return ok && at == bt
	case json.Number:
		bt, ok := b.(json.Number)
		return ok && at == bt
	case float64:
		bt, ok := b.(float64)
		return ok && at == bt
	}
	return false
}

// present reports whether the path names a member of v (in any object of
// an array on the way).
func present(v any, path []string) bool {
	switch t := v.(type) {
	case map[string]any:
		c, ok := t[path[0]]
		if !ok {
			return false
		}
		return len(path) == 1 || present(c, path[1:])
	case []any:
		for _, e := range t {
			if present(e, path) {
				return true
			}
		}
	}
	return false
}
