// Package impact measures what a candidate policy would change before it
// serves: it decides the same inputs with the policy in force and with the
// candidate, and counts the decisions that differ, grouped by purpose, by
// sender → recipient roles and by rules (before → after).
//
// Inputs come from three places: the scenarios, a generator of synthetic
// inputs (any Source), and live traffic in shadow (Shadow). A difference is
// recorded with rule ids, field paths, purpose and roles only — never the
// input itself, which may carry personal data.
package impact

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// Decider decides as a policy.Bundle does. A candidate is compiled in a
// worker process (worker.Bundle), never in the gateway: what it does
// cannot reach the process that serves the exchange.
type Decider interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// Policy is a Decider with its files (its scenarios).
type Policy interface {
	Decider
	FS() fs.FS
}

// Case is one input to compare on, with a label that says what it tests
// ("border-screening; border-management→law-enforcement; age 19; consent
// none"). Labels of synthetic inputs are safe to show; a live input has
// none.
type Case struct {
	Input policy.Input
	Label string
}

// Source gives inputs one at a time. The adversarial generator of
// gateway/policy/synth plugs in through SourceFunc:
//
//	g := synth.New(seed, spec, parties, synth.Options{})
//	src := impact.SourceFunc(func() impact.Case { c := g.Next(); return impact.Case{Input: c.Input, Label: c.Label} })
type Source interface {
	Next() Case
}

// SourceFunc is a Source.
type SourceFunc func() Case

// Next calls f.
func (f SourceFunc) Next() Case { return f() }

// Outcome is what a decision did, without the message: allowed or not, the
// rule ids of its reasons, the removed paths.
type Outcome struct {
	Allow  bool     `json:"allow"`
	Rules  []string `json:"rules"`
	Redact []string `json:"redact"`
	Error  bool     `json:"error,omitempty"` // the policy could not decide (a denial, R1)
}

// OutcomeOf summarises a decision.
func OutcomeOf(d policy.Decision, err error) Outcome {
	rules := d.Rules()
	if rules == nil {
		rules = []string{}
	}
	redact := slices.Clone(d.Redact)
	if redact == nil {
		redact = []string{}
	}
	sort.Strings(redact)
	return Outcome{Allow: d.Allow, Rules: rules, Redact: redact, Error: err != nil}
}

// Equal reports whether two outcomes are the same decision.
func (o Outcome) Equal(p Outcome) bool {
	return o.Allow == p.Allow && o.Error == p.Error && slices.Equal(o.Rules, p.Rules) && slices.Equal(o.Redact, p.Redact)
}

// String is "allowed [R10]" or "denied [R6 R10]".
func (o Outcome) String() string {
	s := "denied"
	if o.Allow {
		s = "allowed"
	}
	if o.Error {
		s += " (policy error)"
	}
	return s + " [" + strings.Join(o.Rules, " ") + "]"
}

// Diff is one input whose decision changes.
type Diff struct {
	Source  string    `json:"source"`          // "scenario", "synthetic" or "shadow"
	ID      string    `json:"id"`              // scenario file, case number, or the live decision id
	Label   string    `json:"label,omitempty"` // what the input tests (never for shadow)
	Purpose string    `json:"purpose"`
	Type    string    `json:"type"`
	Roles   string    `json:"roles"` // "consular → civil-registry"
	Before  Outcome   `json:"before"`
	After   Outcome   `json:"after"`
	At      time.Time `json:"at,omitzero"`
}

// Kind says how the decision changed: "allowed → denied", "denied →
// allowed", or "rules or removals".
func (d Diff) Kind() string {
	switch {
	case d.Before.Allow && !d.After.Allow:
		return "allowed → denied"
	case !d.Before.Allow && d.After.Allow:
		return "denied → allowed"
	}
	return "rules or removals"
}

// RuleChange is "R10 → R6 R10".
func (d Diff) RuleChange() string {
	return ruleList(d.Before.Rules) + " → " + ruleList(d.After.Rules)
}

func ruleList(r []string) string {
	if len(r) == 0 {
		return "(none)"
	}
	return strings.Join(r, " ")
}

// Group counts the changed decisions of one key.
type Group struct {
	Key             string `json:"key"`
	Inputs          int    `json:"inputs"`  // inputs with this key
	Changed         int    `json:"changed"` // whose decision changed at all
	AllowedToDenied int    `json:"allowed_to_denied"`
	DeniedToAllowed int    `json:"denied_to_allowed"`
}

// Report is the comparison of a candidate with the policy in force on one
// source of inputs.
type Report struct {
	Source          string    `json:"source"`
	Inputs          int       `json:"inputs"`
	Changed         int       `json:"changed"`
	AllowedToDenied int       `json:"allowed_to_denied"`
	DeniedToAllowed int       `json:"denied_to_allowed"`
	Errors          int       `json:"errors"` // inputs where either policy could not decide
	ByPurpose       []Group   `json:"by_purpose"`
	ByRoles         []Group   `json:"by_roles"`
	ByRules         []Group   `json:"by_rules"` // key "before → after", changed inputs only
	Diffs           []Diff    `json:"diffs"`    // the first MaxDiffs
	DiffsDropped    int       `json:"diffs_dropped"`
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished,omitzero"`
}

// Group returns the group of key in groups (zero when absent).
func Find(groups []Group, key string) Group {
	for _, g := range groups {
		if g.Key == key {
			return g
		}
	}
	return Group{Key: key}
}

// Tally builds a Report; it is safe for concurrent use.
type Tally struct {
	mu       sync.Mutex
	r        Report
	maxDiffs int
	purposes map[string]*Group
	roles    map[string]*Group
	rules    map[string]*Group
	listed   *Listed // what the report may show (listed.go)
}

// DefaultMaxDiffs bounds the differences a report keeps for drill-down.
const DefaultMaxDiffs = 2000

// NewTally starts a report for source keeping at most maxDiffs differences
// (DefaultMaxDiffs when ≤ 0).
func NewTally(source string, maxDiffs int) *Tally {
	if maxDiffs <= 0 {
		maxDiffs = DefaultMaxDiffs
	}
	return &Tally{r: Report{Source: source, Started: time.Now().UTC()}, maxDiffs: maxDiffs,
		purposes: map[string]*Group{}, roles: map[string]*Group{}, rules: map[string]*Group{}}
}

// Add records one input decided both ways; it returns whether it changed.
func (t *Tally) Add(id, label string, in policy.Input, before, after Outcome, at time.Time) bool {
	d := Diff{Source: t.r.Source, ID: id, Label: label, Purpose: str(in.Message["purpose"]), Type: str(in.Message["type"]),
		Roles: roles(in.Sender) + " → " + roles(in.Recipient), Before: before, After: after, At: at}
	changed := !before.Equal(after)
	d = t.listed.diff(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r.Inputs++
	if before.Error || after.Error {
		t.r.Errors++
	}
	gp, gr := boundedGroup(t.purposes, d.Purpose), boundedGroup(t.roles, d.Roles)
	gp.Inputs++
	gr.Inputs++
	if !changed {
		return false
	}
	t.r.Changed++
	gk := boundedGroup(t.rules, d.RuleChange())
	gk.Inputs++
	for _, g := range []*Group{gp, gr, gk} {
		g.Changed++
		switch d.Kind() {
		case "allowed → denied":
			g.AllowedToDenied++
		case "denied → allowed":
			g.DeniedToAllowed++
		}
	}
	switch d.Kind() {
	case "allowed → denied":
		t.r.AllowedToDenied++
	case "denied → allowed":
		t.r.DeniedToAllowed++
	}
	if len(t.r.Diffs) < t.maxDiffs {
		t.r.Diffs = append(t.r.Diffs, d)
	} else {
		t.r.DiffsDropped++
	}
	return true
}

func group(m map[string]*Group, key string) *Group {
	g, ok := m[key]
	if !ok {
		g = &Group{Key: key}
		m[key] = g
	}
	return g
}

// Report returns a copy of the report so far.
func (t *Tally) Report() Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.r
	r.Diffs = slices.Clone(t.r.Diffs)
	r.ByPurpose, r.ByRoles, r.ByRules = groups(t.purposes, false), groups(t.roles, true), groups(t.rules, true)
	return r
}

// Finish stamps the end.
func (t *Tally) Finish() {
	t.mu.Lock()
	t.r.Finished = time.Now().UTC()
	t.mu.Unlock()
}

// groups sorts by key, or, when onlyChanged, keeps the changed groups
// sorted by changes (most first).
func groups(m map[string]*Group, onlyChanged bool) []Group {
	out := make([]Group, 0, len(m))
	for _, g := range m {
		if onlyChanged && g.Changed == 0 {
			continue
		}
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if onlyChanged && out[i].Changed != out[j].Changed {
			return out[i].Changed > out[j].Changed
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func roles(p policy.Party) string {
	if len(p.Roles) == 0 {
		return "(no role)"
	}
	r := slices.Clone(p.Roles)
	sort.Strings(r)
	return strings.Join(r, "+")
}

func str(v any) string {
	s, _ := v.(string)
	if s == "" {
		return "(none)"
	}
	return s
}

// Compare decides n inputs of src with live and candidate (in parallel, on
// every processor) and returns the report. A nil src or n ≤ 0 compares
// nothing. When the candidate's worker ends (killed at a deadline, out of
// memory), the comparison stops with its DiedError.
func Compare(ctx context.Context, live, candidate Decider, src Source, n int, maxDiffs int) (Report, error) {
	return CompareProgress(ctx, live, candidate, src, n, maxDiffs, nil)
}

// Progress is told how many of n inputs are decided both ways, after each
// one; calls are one at a time.
type Progress func(done, n int)

// CompareProgress is Compare that tells progress (when not nil) as it goes,
// for a caller that shows a long comparison advancing.
func CompareProgress(ctx context.Context, live, candidate Decider, src Source, n int, maxDiffs int, progress Progress) (Report, error) {
	t := NewTally("synthetic", maxDiffs).Only(ListedOf(live))
	var pmu sync.Mutex
	done := 0
	tell := func() {
		if progress == nil {
			return
		}
		pmu.Lock()
		defer pmu.Unlock()
		done++
		progress(done, n)
	}
	if src == nil || n <= 0 {
		t.Finish()
		return t.Report(), nil
	}
	type job struct {
		i int
		c Case
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	jobs := make(chan job)
	var wg sync.WaitGroup
	workers := max(runtime.GOMAXPROCS(0), 1)
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				b, berr := decide(ctx, live, j.c.Input)
				a, aerr := decide(ctx, candidate, j.c.Input)
				if errors.Is(aerr, worker.ErrDied) {
					stop(aerr)
					continue
				}
				t.Add(fmt.Sprintf("#%d", j.i+1), j.c.Label, j.c.Input, OutcomeOf(b, berr), OutcomeOf(a, aerr), time.Time{})
				tell()
			}
		})
	}
	var err error
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		// The source is asked on this goroutine only: a generator need not
		// be safe for concurrent use, and its order stays reproducible.
		select {
		case jobs <- job{i, src.Next()}:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	t.Finish()
	return t.Report(), err
}

// ScenarioResult is one scenario decided both ways.
type ScenarioResult struct {
	File    string  `json:"file"`
	Name    string  `json:"name"`
	Before  Outcome `json:"before"`
	After   Outcome `json:"after"`
	Changed bool    `json:"changed"`
	// ExpectOK says whether the candidate still meets the scenario's
	// expectation.
	ExpectOK bool `json:"expect_ok"`
}

// CompareScenarios decides every scenario of live's and candidate's
// folders (the candidate's copy when both have one) with both policies.
func CompareScenarios(ctx context.Context, live, candidate Policy) (Report, []ScenarioResult, error) {
	t := NewTally("scenario", 0).Only(ListedOf(live))
	files := map[string]fsName{}
	for _, b := range []Policy{live, candidate} {
		names, err := policy.ScenarioFiles(b.FS(), policy.ScenarioDir)
		if err != nil {
			return Report{}, nil, err
		}
		for _, n := range names {
			files[n] = fsName{b, n}
		}
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []ScenarioResult
	for _, k := range keys {
		f := files[k]
		s, err := policy.LoadScenario(f.b.FS(), f.name)
		if err != nil {
			continue // the candidate's own test report shows it
		}
		bd, berr := decide(ctx, live, s.Input)
		ad, aerr := decide(ctx, candidate, s.Input)
		if errors.Is(aerr, worker.ErrDied) {
			return Report{}, nil, aerr
		}
		before, after := OutcomeOf(bd, berr), OutcomeOf(ad, aerr)
		changed := t.Add(k, s.Name, s.Input, before, after, time.Time{})
		out = append(out, ScenarioResult{File: k, Name: s.Name, Before: t.listed.Outcome(before), After: t.listed.Outcome(after), Changed: changed,
			ExpectOK: aerr == nil && len(s.Expect.Check(ad)) == 0})
	}
	t.Finish()
	return t.Report(), out, nil
}

type fsName struct {
	b    Policy
	name string
}

// decide tries an evaluation up to three times: a comparison runs beside
// the live traffic, and an evaluation that ran out of its time on a busy
// machine says nothing about the policy. Other errors are final.
func decide(ctx context.Context, b Decider, in policy.Input) (policy.Decision, error) {
	var d policy.Decision
	var err error
	for range 3 {
		d, err = b.Decide(ctx, in)
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return d, err
		}
	}
	return d, err
}
