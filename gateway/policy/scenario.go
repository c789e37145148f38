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

// ScenarioFiles lists the *.json files under dir in fsys, sorted; a
// missing directory has none. Each scenario sits in a folder of its own
// (scenarios/s01/s01.json): OPA's loader mounts every JSON file of a folder
// at that folder's path under data, so two scenarios in one folder would
// be merged into one document and conflict for `opa test policies/`
// (CheckScenarioLayout). Files directly in dir are still read.
func ScenarioFiles(fsys fs.FS, dir string) ([]string, error) {
	if _, err := fs.Stat(fsys, dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".json") {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: scenarios: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// CheckScenarioLayout reports the scenario files that OPA's loader would
// load as conflicting data: more than one JSON file in one folder (or a
// file directly in dir). Each scenario belongs in a folder of its own,
// named as the file: scenarios/x01-name/x01-name.json.
func CheckScenarioLayout(fsys fs.FS, dir string) error {
	names, err := ScenarioFiles(fsys, dir)
	if err != nil {
		return err
	}
	var problems []string
	for _, n := range names {
		_, file := path.Split(n)
		want := path.Join(dir, strings.TrimSuffix(file, ".json"), file)
		if n != want {
			problems = append(problems, fmt.Sprintf("%s should be %s", n, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("policy: scenarios: one scenario per folder, named as its file, or OPA loads them as conflicting data: %s",
			strings.Join(problems, "; "))
	}
	return nil
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
		d, err := b.decide(ctx, s.Input, scenarioTimeout)
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
