package impact_test

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

var quiet = policy.Options{Timeout: 5 * time.Second}

var live = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.Compile(context.Background(), policies.FS(), quiet)
})

func mustLive(t testing.TB) *policy.Bundle {
	t.Helper()
	b, err := live()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// adult21 is the shipped policy with thresholds.adult raised to 21.
func adult21(t testing.TB) *policy.Bundle {
	t.Helper()
	data, err := fs.ReadFile(policies.FS(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(data), `"adult": 18`, `"adult": 21`, 1)
	if changed == string(data) {
		t.Fatal("data.json has no \"adult\": 18")
	}
	fsys, err := impact.Candidate(policies.FS(), []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Compile(context.Background(), fsys, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func TestSameCandidateChangesNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compares 500 generated decisions and every scenario under one policy twice")
	}
	b := mustLive(t)
	g, err := impact.Synth(1, b, impact.DemoParties(), now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := impact.Compare(context.Background(), b, b, g, 500, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Inputs != 500 || r.Changed != 0 {
		t.Fatalf("inputs %d, changed %d", r.Inputs, r.Changed)
	}
}

// TestAdult21 checks the impact of raising the age of majority to 21
// against an expectation computed from DOMAIN.md, not from the Rego: the
// subject's age is computed here (impact.AgeOf, R4), and R6 says a child's
// data is never sent for border-screening, so every border-screening input
// the live policy allowed about someone aged 18 to 20 must become a
// denial, and no other border-screening input may change its outcome. And
// every changed decision must be about someone 18 to 20 (now, or at the
// time of the conduct for R7).
func TestAdult21(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compares 1,000 generated decisions under the live and a candidate policy")
	}
	const n = 1000
	b, cand := mustLive(t), adult21(t)
	g, _ := impact.Synth(7, b, impact.DemoParties(), now)
	r, err := impact.Compare(context.Background(), b, cand, g, n, n)
	if err != nil {
		t.Fatal(err)
	}
	// The same inputs again, to count independently.
	again, _ := impact.Synth(7, b, impact.DemoParties(), now)
	cases := make([]impact.Case, n)
	expected := 0
	for i := range cases {
		cases[i] = again.Next()
		in := cases[i].Input
		if in.Message["purpose"] != "border-screening" {
			continue
		}
		if age, ok := impact.AgeOf(in); ok && age >= 18 && age <= 20 {
			if d, err := b.Decide(context.Background(), in); err == nil && d.Allow {
				expected++
			}
		}
	}
	got := impact.Find(r.ByPurpose, "border-screening")
	if got.AllowedToDenied != expected || got.DeniedToAllowed != 0 || expected == 0 {
		t.Errorf("border-screening: %+v, want %d allowed → denied", got, expected)
	}
	for _, d := range r.Diffs {
		i, _ := strconv.Atoi(strings.TrimPrefix(d.ID, "#"))
		in := cases[i-1].Input
		age, ok := impact.AgeOf(in)
		conduct := -1
		if rec, _ := in.Message["record"].(map[string]any); rec != nil {
			if off, _ := rec["offence_date"].(string); off != "" {
				at := in
				at.Now = off + "T00:00:00Z"
				conduct, _ = impact.AgeOf(at)
			}
		}
		if !(ok && age >= 18 && age <= 20) && !(conduct >= 18 && conduct <= 20) {
			t.Errorf("%s (%s) changed: %s → %s", d.ID, d.Label, d.Before, d.After)
		}
	}
	t.Logf("%d inputs, %d changed (%d allowed → denied, %d denied → allowed); border-screening %+v",
		r.Inputs, r.Changed, r.AllowedToDenied, r.DeniedToAllowed, got)
}

func TestShadow(t *testing.T) {
	t.Parallel()
	b, cand := mustLive(t), adult21(t)
	s, err := impact.StartShadow(context.Background(), cand, cand.Version, b.Version, impact.ShadowOptions{For: time.Minute, Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	g, _ := impact.Synth(9, b, impact.DemoParties(), now)
	for i := range 200 {
		c := g.Next()
		d, err := b.Decide(context.Background(), c.Input)
		if err != nil {
			continue
		}
		s.Observe(context.Background(), "dec-"+strconv.Itoa(i), c.Input, d, b.Version)
	}
	s.Observe(context.Background(), "other", policy.Input{}, policy.Decision{}, "sha256:other")
	deadline := time.Now().Add(30 * time.Second)
	for !s.Settled() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	rep := s.Report()
	if rep.Observed != 201 || rep.OtherLive != 1 || int64(rep.Report.Inputs)+rep.Dropped != 200 {
		t.Errorf("observed %d, other %d, compared %d, dropped %d", rep.Observed, rep.OtherLive, rep.Report.Inputs, rep.Dropped)
	}
	for _, d := range rep.Report.Diffs {
		if d.Label != "" || !strings.HasPrefix(d.ID, "dec-") {
			t.Errorf("diff %+v", d)
		}
	}
}

func TestCandidateRefuses(t *testing.T) {
	t.Parallel()
	tests := map[string][]tarEntry{
		"dot-dot":  {{name: "../data.json", body: "{}"}},
		"absolute": {{name: "/etc/data.json", body: "{}"}},
		"symlink":  {{name: "data.json", link: "/etc/passwd"}},
		"no data":  {{name: "a.rego", body: "package a"}},
	}
	for name, entries := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := impact.Candidate(fstest.MapFS{}, tarGz(t, entries))
			if !errors.Is(err, impact.ErrCandidate) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("folder prefix", func(t *testing.T) {
		fsys, err := impact.Candidate(fstest.MapFS{}, tarGz(t, []tarEntry{{name: "policies/data.json", body: "{}"}, {name: "policies/a.rego", body: "package a"}}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Stat(fsys, "a.rego"); err != nil {
			t.Fatal(err)
		}
	})
}
