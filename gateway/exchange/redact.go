package exchange

import "strings"

// Redact returns msg without the fields named by the dotted paths. The input
// is not modified: maps on a redacted path are copied, everything else is
// shared with the input.
func Redact(msg map[string]any, paths []string) map[string]any {
	if len(paths) == 0 {
		return msg
	}
	out := shallow(msg)
	for _, p := range paths {
		remove(out, strings.Split(p, "."))
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

// remove deletes the path from m, which the caller owns; maps along the way
// are copied before they are changed.
func remove(m map[string]any, path []string) {
	if len(path) == 1 {
		delete(m, path[0])
		return
	}
	child, ok := m[path[0]].(map[string]any)
	if !ok {
		return
	}
	c := shallow(child)
	m[path[0]] = c
	remove(c, path[1:])
}
