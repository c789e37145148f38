package oracle_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/oracle"
	"github.com/xborder/xborder/gateway/policy/synth"
)

func generator(t testing.TB, seed int64) *synth.Generator {
	t.Helper()
	spec, err := synth.Load(dataJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	return synth.New(seed, spec, nil, synth.Options{})
}

// TestDomainScenarios: the oracle's decision and reference minimisation
// agree with the acceptance cases of DOMAIN.md §9 (s01–s18, the ones beside
// DOMAIN.md, kept in policies/scenarios).
func TestDomainScenarios(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "policies", "scenarios", "s[0-9][0-9]", "s[0-9][0-9].json"))
	if err != nil || len(files) != 18 {
		t.Fatalf("%d scenarios of DOMAIN.md §9 (%v)", len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var sc struct {
				Input  policy.Input `json:"input"`
				Expect struct {
					Allow         bool     `json:"allow"`
					RulesInclude  []string `json:"rules_include"`
					RedactInclude []string `json:"redact_include"`
					RedactExclude []string `json:"redact_exclude"`
				} `json:"expect"`
			}
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.UseNumber()
			if err := dec.Decode(&sc); err != nil {
				t.Fatal(err)
			}
			deny := o.MustDeny(sc.Input)
			if sc.Expect.Allow != (len(deny) == 0) {
				t.Fatalf("scenario allow %v, oracle:%s", sc.Expect.Allow, show(deny))
			}
			if !sc.Expect.Allow {
				for _, r := range sc.Expect.RulesInclude {
					if !has(deny, r, "") {
						t.Errorf("the scenario denies by %s, the oracle:%s", r, show(deny))
					}
				}
				return
			}
			d, red := o.Minimise(sc.Input)
			for _, p := range sc.Expect.RedactInclude {
				if !slices.Contains(red, p) {
					t.Errorf("%s must be redacted; the oracle removes %v", p, red)
				}
			}
			for _, p := range sc.Expect.RedactExclude {
				if slices.Contains(red, p) {
					t.Errorf("%s must not be redacted", p)
				}
			}
			if vs := o.Check(sc.Input, true, d, red); len(vs) > 0 {
				t.Errorf("the reference delivery judged wrong:%s", show(vs))
			}
		})
	}
}

// TestUnredactedDeliveriesFail: delivering each generated message as sent,
// allowed and with nothing listed, is caught over and over: the oracle can
// fail.
func TestUnredactedDeliveriesFail(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	g := generator(t, 99)
	const n = 2000
	total, caught, leaks := 0, 0, 0
	perRule := map[string]int{}
	for range n {
		c := g.Next()
		vs := o.Check(c.Input, true, synth.CloneValue(c.Input.Message).(map[string]any), nil)
		total += len(vs)
		if len(vs) > 0 {
			caught++
		}
		leaked := false
		for _, v := range vs {
			perRule[v.Rule]++
			if v.Rule != "PROTOCOL-2" && !slices.Contains([]string{"R2", "R3", "R4", "R6", "R7", "R9", "R14", "R15", "R16"}, v.Rule) {
				leaked = true
			}
		}
		if leaked {
			leaks++
		}
	}
	t.Logf("%d violations in %d cases (%d per 1,000); %d cases caught, %d with a leak of content; by rule %v",
		total, n, total*1000/n, caught, leaks, perRule)
	if caught < n*9/10 {
		t.Errorf("only %d of %d unredacted deliveries caught", caught, n)
	}
	if leaks < n/2 {
		t.Errorf("only %d of %d unredacted deliveries leak content", leaks, n)
	}
	for _, r := range []string{"PROTOCOL-2", "R2", "R3", "R4", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R14", "R15", "R16"} {
		if perRule[r] == 0 {
			t.Errorf("no %s violation in %d unredacted deliveries", r, n)
		}
	}
}

// TestReferenceDeliveriesPass: the oracle accepts its own reference for
// every generated case it lets go, and a denial with nothing delivered;
// the generator's Invalid and the oracle's name rule agree.
func TestReferenceDeliveriesPass(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	g := generator(t, 7)
	allowed := 0
	for i := range 2000 {
		c := g.Next()
		deny := o.MustDeny(c.Input)
		if c.Invalid != (len(oracle.InvalidNames(c.Input.Message)) > 0) {
			t.Fatalf("case %d (%s): generator Invalid %v, oracle %v", i, c.Label, c.Invalid, oracle.InvalidNames(c.Input.Message))
		}
		if c.Invalid != has(deny, "PROTOCOL-2", "") || c.Invalid != oracle.MustRefuse(c.Input.Message) {
			t.Fatalf("case %d (%s): Invalid %v, but refusal%s", i, c.Label, c.Invalid, show(deny))
		}
		if len(deny) > 0 {
			if vs := o.Check(c.Input, false, nil, nil); len(vs) > 0 {
				t.Fatalf("case %d: a denial judged wrong:%s", i, show(vs))
			}
			continue
		}
		allowed++
		d, red := o.Minimise(c.Input)
		if i%2 == 0 {
			// A harness may decode the delivery without UseNumber: numbers
			// are float64 then, and still the same values.
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			d = nil
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
		}
		if vs := o.Check(c.Input, true, d, red); len(vs) > 0 {
			t.Fatalf("case %d (%s): the reference delivery judged wrong:%s", i, c.Label, show(vs))
		}
	}
	if allowed < 200 {
		t.Errorf("only %d of 2000 generated cases may go", allowed)
	}
	t.Logf("%d of 2000 generated cases may go", allowed)
}

// strs lists the string values of a message.
func strs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			strs(e, out)
		}
	case []any:
		for _, e := range x {
			strs(e, out)
		}
	case string:
		*out = append(*out, x)
	}
}

// codeRE matches the codes of the rules' vocabulary (outcome "refused",
// status "accepted", a purpose), which a reason may well say itself.
var codeRE = regexp.MustCompile(`^[a-z0-9_.:/-]*$`)

// TestViolationsRepeatNoValue: what a violation says never holds a value
// of the message other than a code of the rules' vocabulary: no name, no
// date, no reference, no free text (PROTOCOL.md §3.2).
func TestViolationsRepeatNoValue(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	g := generator(t, 3)
	checked := 0
	for range 1000 {
		c := g.Next()
		var values []string
		strs(c.Input.Message, &values)
		for _, v := range o.Check(c.Input, true, synth.CloneValue(c.Input.Message).(map[string]any), []string{"subject.x", "record"}) {
			for _, s := range values {
				if len(s) < 3 || codeRE.MatchString(s) {
					continue
				}
				checked++
				if strings.Contains(v.Why, s) || strings.Contains(v.Path, s) {
					t.Fatalf("%s repeats a value of the message", v)
				}
			}
		}
	}
	if checked < 10000 {
		t.Errorf("only %d checks", checked)
	}
}

func BenchmarkCheckUnredacted(b *testing.B) {
	o := newOracle(b)
	g := generator(b, 1)
	cases := make([]synth.Case, 1000)
	for i := range cases {
		cases[i] = g.Next()
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c := cases[i%len(cases)]
		o.Check(c.Input, true, c.Input.Message, nil)
	}
}
