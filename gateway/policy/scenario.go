package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
)

// ScenarioDir is where a policy directory keeps its acceptance cases.
const ScenarioDir = "scenarios"

// Scenario is one acceptance case (DOMAIN.md §9): an input and what the
// decision must be.
type Scenario struct {
	Name   string      `json:"name"`
	Input  Input       `json:"input"`
	Expect Expectation `json:"expect"`
}

// Expectation is what a scenario's decision must satisfy. Absent fields are
// not checked, except Allow, which every scenario states.
type Expectation struct {
	Allow         *bool                `json:"allow"`
	RulesInclude  []string             `json:"rules_include,omitempty"`
	RedactInclude []string             `json:"redact_include,omitempty"`
	RedactExclude []string             `json:"redact_exclude,omitempty"`
	Obligations   *ExpectedObligations `json:"obligations,omitempty"`
}

// ExpectedObligations are checked field by field when present.
type ExpectedObligations struct {
	RetentionDays *int  `json:"retention_days,omitempty"`
	Review        *bool `json:"review,omitempty"`
}

// ScenarioResult is the outcome of one scenario.
type ScenarioResult struct {
	File     string   `json:"file"`
	Name     string   `json:"name"`
	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
	Decision Decision `json:"decision"`
	Err      string   `json:"error,omitempty"`
}

// LoadScenario reads and checks one scenario file. Unknown fields are an
// error, so that a misspelt expectation cannot pass silently.
func LoadScenario(fsys fs.FS, name string) (Scenario, error) {
	var s Scenario
	raw, err := fs.ReadFile(fsys, name)
	if err != nil {
		return s, fmt.Errorf("policy: scenario %s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("policy: scenario %s: %w", name, err)
	}
	if s.Name == "" {
		return s, fmt.Errorf("policy: scenario %s: no name", name)
	}
	if s.Expect.Allow == nil {
		return s, fmt.Errorf("policy: scenario %s: expect.allow is missing", name)
	}
	if s.Input.Message == nil {
		return s, fmt.Errorf("policy: scenario %s: input.message is missing", name)
	}
	return s, nil
}

// Check lists how d falls short of the expectation; none means it passes.
func (e Expectation) Check(d Decision) []string {
	var problems []string
	if e.Allow != nil && d.Allow != *e.Allow {
		problems = append(problems, fmt.Sprintf("allow = %t, want %t", d.Allow, *e.Allow))
	}
	rules := d.Rules()
	for _, r := range e.RulesInclude {
		if !slices.Contains(rules, r) {
			problems = append(problems, fmt.Sprintf("rules %v lack %s", rules, r))
		}
	}
	for _, p := range e.RedactInclude {
		if !slices.Contains(d.Redact, p) {
			problems = append(problems, fmt.Sprintf("redact lacks %s", p))
		}
	}
	for _, p := range e.RedactExclude {
		if slices.Contains(d.Redact, p) {
			problems = append(problems, fmt.Sprintf("redact has %s", p))
		}
	}
	if o := e.Obligations; o != nil {
		if o.RetentionDays != nil && d.Obligations.RetentionDays != *o.RetentionDays {
			problems = append(problems, fmt.Sprintf("retention_days = %d, want %d", d.Obligations.RetentionDays, *o.RetentionDays))
		}
		if o.Review != nil && d.Obligations.Review != *o.Review {
			problems = append(problems, fmt.Sprintf("review = %t, want %t", d.Obligations.Review, *o.Review))
		}
	}
	return problems
}

// ScenarioFiles lists the *.json files of dir in fsys, sorted; a missing
// directory has none.
func ScenarioFiles(fsys fs.FS, dir string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy: scenarios: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(names)
	return names, nil
}

// RunScenarios decides every scenario of dir in fsys with b. A scenario that
// cannot be read is a failed result; the error is for the directory itself.
func RunScenarios(ctx context.Context, b *Bundle, fsys fs.FS, dir string) ([]ScenarioResult, error) {
	names, err := ScenarioFiles(fsys, dir)
	if err != nil {
		return nil, err
	}
	results := make([]ScenarioResult, 0, len(names))
	for _, name := range names {
		res := ScenarioResult{File: name}
		s, err := LoadScenario(fsys, name)
		if err != nil {
			res.Err = err.Error()
			results = append(results, res)
			continue
		}
		res.Name = s.Name
		d, err := b.decide(ctx, s.Input, testTimeout)
		res.Decision = d
		if err != nil {
			res.Err = err.Error()
		}
		res.Problems = s.Expect.Check(d)
		res.Pass = err == nil && len(res.Problems) == 0
		results = append(results, res)
	}
	return results, nil
}
