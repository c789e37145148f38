package synth

import (
	"slices"
	"sort"
)

// Coverage tallies what cases exercise, by dimension: "purpose-type",
// "role-pair", "age", "consent", "section", "other" and "label".
type Coverage struct {
	Cases  int
	counts map[string]map[string]int
}

// NewCoverage returns an empty tally.
func NewCoverage() *Coverage { return &Coverage{counts: map[string]map[string]int{}} }

func (c *Coverage) add(dim, value string) {
	m := c.counts[dim]
	if m == nil {
		m = map[string]int{}
		c.counts[dim] = m
	}
	m[value]++
}

// Add counts one case.
func (c *Coverage) Add(cs Case) {
	c.Cases++
	c.add("purpose-type", cs.Tags.PurposeType)
	c.add("role-pair", cs.Tags.RolePair)
	c.add("age", cs.Tags.Age)
	c.add("label", cs.Label)
	for _, v := range cs.Tags.Consent {
		c.add("consent", v)
	}
	for _, v := range cs.Tags.Sections {
		c.add("section", v)
	}
	for _, v := range cs.Tags.Other {
		c.add("other", v)
	}
}

// Count returns how many cases had value in dimension dim.
func (c *Coverage) Count(dim, value string) int { return c.counts[dim][value] }

// Values returns the tally of one dimension.
func (c *Coverage) Values(dim string) map[string]int { return c.counts[dim] }

// Missing returns the values of want that no case had in dimension dim.
func (c *Coverage) Missing(dim string, want []string) []string {
	var out []string
	for _, w := range want {
		if c.counts[dim][w] == 0 {
			out = append(out, w)
		}
	}
	return slices.Compact(out)
}

// Sorted returns the values of one dimension, most frequent first.
func (c *Coverage) Sorted(dim string) []string {
	m := c.counts[dim]
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if m[out[i]] != m[out[j]] {
			return m[out[i]] > m[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}
