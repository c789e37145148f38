package policy

import (
	"encoding/json"
	"io/fs"
	"sort"
	"strings"
)

// FS is the file system the bundle was compiled from (its scenarios
// included).
func (b *Bundle) FS() fs.FS { return b.fsys }

// Source returns the text of one .rego module of the bundle.
func (b *Bundle) Source(path string) (string, bool) {
	s, ok := b.sources[path]
	return s, ok
}

// DataJSON is the bundle's merged policy data as JSON.
func (b *Bundle) DataJSON() []byte {
	out, _ := json.MarshalIndent(b.data, "", "  ")
	return out
}

// RuleRef ties a rule of DOMAIN.md §6 to where it is written, from the
// modules' # METADATA annotations.
type RuleRef struct {
	Rule    string   `json:"rule"`    // "R6"
	Module  string   `json:"module"`  // "children.rego"
	Package string   `json:"package"` // "data.xborder.children"
	Entries []string `json:"entries"` // the module's rules that carry it ("deny", "removals")
	Title   string   `json:"title"`   // the module's title
}

// RuleMap reads the package # METADATA annotations of the serving modules
// (OPA's ast annotations, custom.rules: a map of rule id to the module's
// rules that implement it) and lists where each rule of DOMAIN.md §6 is
// written, sorted by rule number, then module.
func (b *Bundle) RuleMap() ([]RuleRef, error) {
	mods, err := b.parse(false)
	if err != nil {
		return nil, err
	}
	var out []RuleRef
	for _, name := range sortedKeys(mods) {
		m := mods[name]
		for _, a := range m.Annotations {
			if a.Scope != "package" {
				continue
			}
			rules, _ := a.Custom["rules"].(map[string]any)
			for id, v := range rules {
				ref := RuleRef{Rule: id, Module: name, Package: m.Package.Path.String(), Title: a.Title}
				if list, ok := v.([]any); ok {
					for _, e := range list {
						if s, ok := e.(string); ok {
							ref.Entries = append(ref.Entries, s)
						}
					}
				}
				out = append(out, ref)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := ruleNumber(out[i].Rule), ruleNumber(out[j].Rule); ri != rj {
			return ri < rj
		}
		return out[i].Module < out[j].Module
	})
	return out, nil
}

func ruleNumber(id string) int {
	n := 0
	for _, c := range strings.TrimPrefix(id, "R") {
		if c < '0' || c > '9' {
			return 1 << 20
		}
		n = n*10 + int(c-'0')
	}
	return n
}
