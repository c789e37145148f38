package policy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/format"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

var quiet = slog.New(slog.DiscardHandler)

// bundle is the embedded policy, compiled once for the tests that only read.
var bundle = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.Compile(context.Background(), policies.FS(), policy.Options{Timeout: testTimeout, Logger: quiet})
})

// benchBundle is the embedded policy with a deadline that a loaded machine,
// or one decision under valgrind, does not miss: a benchmark measures the
// cost of a decision, not the deadline (the timer is the same either way).
var benchBundle = sync.OnceValues(func() (*policy.Bundle, error) {
	return policy.Compile(context.Background(), policies.FS(), policy.Options{Logger: quiet, Timeout: time.Minute})
})

func benchEmbedded(b *testing.B) *policy.Bundle {
	b.Helper()
	bundle, err := benchBundle()
	if err != nil {
		b.Fatalf("compile embedded policies: %v", err)
	}
	return bundle
}

func embedded(t testing.TB) *policy.Bundle {
	t.Helper()
	b, err := bundle()
	if err != nil {
		t.Fatalf("compile embedded policies: %v", err)
	}
	return b
}

// policyFiles copies the embedded policy directory into a MapFS that a test
// may change.
func policyFiles(t testing.TB) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(policies.FS(), p)
		m[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	b := embedded(t)
	names, err := policy.ScenarioFiles(policies.FS(), policy.ScenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 18 {
		t.Fatalf("found %d scenarios, want the 18 of the specification and more", len(names))
	}
	for _, name := range names {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".json"), func(t *testing.T) {
			s, err := policy.LoadScenario(policies.FS(), name)
			if err != nil {
				t.Fatal(err)
			}
			d, err := b.Decide(context.Background(), s.Input)
			if err != nil {
				t.Fatalf("decide: %v", err)
			}
			for _, p := range s.Expect.Check(d) {
				t.Errorf("%s: %s (reasons %v)", s.Name, p, d.Reasons)
			}
			if d.Obligations.RetentionDays <= 0 && d.Allow {
				t.Errorf("allowed without a retention period")
			}
		})
	}
}

func TestExpectationCheckFails(t *testing.T) {
	t.Parallel()
	no, yes := false, true
	days := 90
	d := policy.Decision{Allow: true, Reasons: []policy.Reason{{Rule: "R10", Message: "m"}}, Redact: []string{"subject.location"},
		Obligations: policy.Obligations{RetentionDays: 400}}
	tests := []struct {
		name string
		exp  policy.Expectation
		want int
	}{
		{"matches", policy.Expectation{Allow: &yes, RulesInclude: []string{"R10"}, RedactInclude: []string{"subject.location"}}, 0},
		{"allow differs", policy.Expectation{Allow: &no}, 1},
		{"rule missing", policy.Expectation{Allow: &yes, RulesInclude: []string{"R12"}}, 1},
		{"redaction missing", policy.Expectation{Allow: &yes, RedactInclude: []string{"subject.names"}}, 1},
		{"redaction unwanted", policy.Expectation{Allow: &yes, RedactExclude: []string{"subject.location"}}, 1},
		{"retention differs", policy.Expectation{Allow: &yes, Obligations: &policy.ExpectedObligations{RetentionDays: &days}}, 1},
		{"review differs", policy.Expectation{Allow: &yes, Obligations: &policy.ExpectedObligations{Review: &yes}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.exp.Check(d); len(got) != tt.want {
				t.Errorf("Check = %v, want %d problems", got, tt.want)
			}
		})
	}
}

// The modules are as `opa fmt` writes them.
func TestRegoFormatted(t *testing.T) {
	t.Parallel()
	files, err := fs.Glob(policies.FS(), "*.rego")
	if err != nil || len(files) == 0 {
		t.Fatalf("no modules: %v", err)
	}
	for _, name := range files {
		src, err := fs.ReadFile(policies.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.Source(name, src)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if string(out) != string(src) {
			t.Errorf("%s is not formatted (opa fmt)", name)
		}
	}
}

func TestLoadScenarioRejects(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"typo.json":     {Data: []byte(`{"name":"n","input":{"message":{}},"expect":{"allow":true,"rules_includes":["R1"]}}`)},
		"no-allow.json": {Data: []byte(`{"name":"n","input":{"message":{}},"expect":{}}`)},
		"no-name.json":  {Data: []byte(`{"input":{"message":{}},"expect":{"allow":true}}`)},
		"not-json.json": {Data: []byte(`{`)},
		"no-input.json": {Data: []byte(`{"name":"n","expect":{"allow":true}}`)},
	}
	for name := range fsys {
		t.Run(name, func(t *testing.T) {
			if _, err := policy.LoadScenario(fsys, name); err == nil {
				t.Fatal("LoadScenario accepted a bad scenario")
			}
		})
	}
}

func TestBundleTest(t *testing.T) {
	if testing.Short() {
		t.Skip("every Rego test and scenario (seconds); under -short the first gateway of gateway, console and cmd/xborder runs them")
	}
	t.Parallel()
	b := embedded(t)
	rep, err := b.Test(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("policy tests fail: %v", rep.Err())
	}
	if rep.RegoPassed < 40 {
		t.Errorf("only %d Rego tests ran", rep.RegoPassed)
	}
	names, _ := policy.ScenarioFiles(policies.FS(), policy.ScenarioDir)
	if rep.ScenariosPassed != len(names) {
		t.Errorf("%d scenarios passed, want %d", rep.ScenariosPassed, len(names))
	}
	t.Logf("rego tests: %d passed; scenarios: %d passed", rep.RegoPassed, rep.ScenariosPassed)
}

func TestBundleTestReportsFailures(t *testing.T) {
	t.Parallel()
	files := tinyPolicy("10", "1")
	files["extra_test.rego"] = &fstest.MapFile{Data: []byte("package xborder.extra_test\n\ntest_fails if false\n")}
	// A scenario whose expectation the policy does not meet.
	files["scenarios/zz-wrong/zz-wrong.json"] = &fstest.MapFile{Data: tinyScenario(50, true)}
	b, err := policy.Compile(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Test(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.RegoFailed != 1 || rep.ScenariosFailed != 1 || rep.OK() || rep.Err() == nil {
		t.Fatalf("report = %+v, want one Rego and one scenario failure", rep)
	}
	joined := strings.Join(rep.Failures, "\n")
	for _, want := range []string{"test_fails", "zz-wrong.json"} {
		if !strings.Contains(joined, want) {
			t.Errorf("failures %q do not name %s", joined, want)
		}
	}
}

func mustRead(t testing.TB, name, old, new string) []byte {
	t.Helper()
	data, err := fs.ReadFile(policies.FS(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", name, old)
	}
	return []byte(strings.Replace(string(data), old, new, 1))
}

func TestCompileRefusesForbiddenBuiltins(t *testing.T) {
	t.Parallel()
	bodies := map[string]string{
		"http.send":          `x := http.send({"method": "GET", "url": "https://example.org"})`,
		"net.lookup_ip_addr": `x := net.lookup_ip_addr("example.org")`,
		"opa.runtime":        `x := opa.runtime()`,
		"time.now_ns":        `x := time.now_ns()`,
		"rand.intn":          `x := rand.intn("k", 10)`,
		"uuid.rfc4122":       `x := uuid.rfc4122("k")`,
	}
	// Beside a small policy: the refusal is of the added module alone.
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			files := tinyPolicy("10", "1")
			files["evil.rego"] = &fstest.MapFile{Data: []byte("package xborder.evil\n\n" + body + "\n")}
			_, err := policy.Compile(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("Compile = %v, want an error naming %s", err, name)
			}
		})
	}
	t.Run("in a test file too", func(t *testing.T) {
		files := tinyPolicy("10", "1")
		files["evil_test.rego"] = &fstest.MapFile{Data: []byte("package xborder.evil_test\n\ntest_x if http.send({})\n")}
		if _, err := policy.Compile(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet}); err == nil {
			t.Fatal("Compile accepted http.send in a test file")
		}
	})
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]fstest.MapFS{
		"no rego":        {"data.json": {Data: []byte(`{}`)}},
		"parse error":    {"a.rego": {Data: []byte("package a\n\nx := \n")}},
		"bad data":       {"a.rego": {Data: []byte("package a\n"), Mode: 0o644}, "data.json": {Data: []byte(`[1]`)}},
		"unsafe":         {"a.rego": {Data: []byte("package a\n\nx if y > 1\n")}},
		"data conflicts": {"a.rego": {Data: []byte("package a\n")}, "data.json": {Data: []byte(`{"b": 1}`)}, "b/data.json": {Data: []byte(`{"c": 1}`)}},
	}
	for name, fsys := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := policy.Compile(context.Background(), fsys, policy.Options{Timeout: testTimeout, Logger: quiet})
			if err == nil || !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("Compile = %v, want a policy: error", err)
			}
		})
	}
}

// s03 is the reference input of the tests below and of the benchmark.
func s03(t testing.TB) policy.Input {
	t.Helper()
	s, err := policy.LoadScenario(policies.FS(), "scenarios/s03/s03.json")
	if err != nil {
		t.Fatal(err)
	}
	return s.Input
}

func TestDecideFailsClosed(t *testing.T) {
	t.Parallel()
	modules := map[string]string{
		"undefined entrypoint":      "package other\n\nx := 1\n",
		"malformed decision":        "package xborder\n\ndecision := {\"allow\": \"yes\"}\n",
		"allow without obligations": "package xborder\n\ndecision := {\"allow\": true, \"reasons\": [], \"redact\": []}\n",
		"denial without reasons":    "package xborder\n\ndecision := {\"allow\": false, \"reasons\": [], \"redact\": [], \"obligations\": {\"retention_days\": 1, \"review\": false}}\n",
		"built-in error":            "package xborder\n\ndecision := {\"allow\": to_number(input.now)}\n",
		"conflicting values":        "package xborder\n\ndecision := 1 if input.now\n\ndecision := 2 if input.sender\n",
	}
	for name, src := range modules {
		t.Run(name, func(t *testing.T) {
			b, err := policy.Compile(context.Background(), fstest.MapFS{"p.rego": {Data: []byte(src)}}, policy.Options{Timeout: testTimeout, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			d, err := b.Decide(context.Background(), s03(t))
			if err == nil {
				t.Fatal("Decide returned no error")
			}
			assertDenied(t, d)
		})
	}
	t.Run("undefined is ErrUndefined", func(t *testing.T) {
		b, err := policy.Compile(context.Background(), fstest.MapFS{"p.rego": {Data: []byte(modules["undefined entrypoint"])}}, policy.Options{Timeout: testTimeout, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Decide(context.Background(), s03(t)); !errors.Is(err, policy.ErrUndefined) {
			t.Fatalf("err = %v, want ErrUndefined", err)
		}
	})
}

func assertDenied(t *testing.T, d policy.Decision) {
	t.Helper()
	if d.Allow || len(d.Reasons) == 0 || d.Reasons[0].Rule != "R1" {
		t.Fatalf("decision = %+v, want an R1 denial", d)
	}
}

// A module that takes far longer than the timeout.
const slowModule = `package xborder

decision := {"allow": true, "reasons": [], "redact": [], "obligations": {"retention_days": count(_pairs), "review": false}}

_pairs := [1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i > j]
`

func TestDecideTimeout(t *testing.T) {
	t.Parallel()
	b, err := policy.Compile(context.Background(), fstest.MapFS{"slow.rego": {Data: []byte(slowModule)}},
		policy.Options{Timeout: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := b.Decide(context.Background(), s03(t))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	assertDenied(t, d)
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("timeout took %v", elapsed)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err = embedded(t).Decide(ctx, s03(t))
	if err == nil {
		t.Fatal("a cancelled context gave no error")
	}
	assertDenied(t, d)
}

func TestVersion(t *testing.T) {
	t.Parallel()
	base := policyFiles(t)
	v0, err := policy.Digest(base)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v0, "sha256:") || len(v0) != len("sha256:")+64 {
		t.Fatalf("version %q is not sha256:<hex>", v0)
	}
	if b := embedded(t); b.Version != v0 {
		t.Errorf("bundle version %s, digest %s", b.Version, v0)
	}
	changed := policyFiles(t)
	changed["data.json"] = &fstest.MapFile{Data: mustRead(t, "data.json", `"border-screening": 30`, `"border-screening": 31`)}
	scenarioOnly := policyFiles(t)
	scenarioOnly["scenarios/s01/s01.json"] = &fstest.MapFile{Data: []byte(`{}`)}
	renamed := policyFiles(t)
	renamed["zz.rego"], renamed["age.rego"] = renamed["age.rego"], nil
	delete(renamed, "age.rego")

	tests := []struct {
		name string
		fsys fs.FS
		same bool
	}{
		{"same files", policyFiles(t), true},
		{"data.json changed", changed, false},
		{"a scenario changed", scenarioOnly, true},
		{"a module renamed", renamed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := policy.Digest(tt.fsys)
			if err != nil {
				t.Fatal(err)
			}
			if (v == v0) != tt.same {
				t.Errorf("version %s vs %s, same = %t, want %t", v, v0, v == v0, tt.same)
			}
		})
	}
}

func TestEngineReload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	withScenario := func(limit string) fstest.MapFS {
		files := tinyPolicy(limit, "1")
		files["scenarios/small/small.json"] = &fstest.MapFile{Data: tinyScenario(5, true)}
		return files
	}
	e, err := policy.NewEngine(ctx, withScenario("10"), policy.Options{Timeout: testTimeout, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v0 := e.Current().Version
	if st := e.Status(); st.Version != v0 || st.LastError != "" || len(st.Modules) == 0 || st.LoadedAt.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	small := policy.Input{Now: "2026-12-01T00:00:00Z", Message: map[string]any{"n": json.Number("1")}}

	broken := withScenario("10")
	broken["decision.rego"] = &fstest.MapFile{Data: []byte("package xborder\n\ndecision := \n")}
	// Compiles, but its own scenario (and Rego test) expect n = 5 allowed.
	failing := withScenario("3")

	for name, fsys := range map[string]fs.FS{"parse error": broken, "failing scenarios": failing} {
		t.Run("refuses "+name, func(t *testing.T) {
			if err := e.Reload(ctx, fsys); err == nil {
				t.Fatal("Reload accepted a bad policy")
			}
			st := e.Status()
			if st.Version != v0 || e.Current().Version != v0 {
				t.Errorf("version changed to %s", st.Version)
			}
			if st.LastError == "" || st.LastErrorAt.IsZero() {
				t.Errorf("status = %+v, want the error recorded", st)
			}
			if d, err := e.Decide(ctx, small); err != nil || !d.Allow {
				t.Errorf("the old policy no longer serves: %+v, %v", d, err)
			}
		})
	}

	t.Run("accepts a good change", func(t *testing.T) {
		if err := e.Reload(ctx, withScenario("20")); err != nil {
			t.Fatal(err)
		}
		st := e.Status()
		if st.Version == v0 || st.LastError != "" {
			t.Errorf("status = %+v, want a new version and no error", st)
		}
	})
}

// newAgreement is data.json with one more agreement, a change no test or
// scenario objects to.
func newAgreement(t testing.TB) []byte {
	return mustRead(t, "data.json", `"agreements": [`,
		`"agreements": [{"id": "NEW-2026", "parties": ["UZ-MFA", "UN-OHCHR"], "purposes": ["hr-monitoring"], "valid_from": "2026-01-01", "valid_until": "2026-12-31"},`)
}

func TestNewEngineRefusesFailingPolicy(t *testing.T) {
	t.Parallel()
	files := tinyPolicy("10", "1")
	files["extra_test.rego"] = &fstest.MapFile{Data: []byte("package xborder.extra_test\n\ntest_fails if false\n")}
	if _, err := policy.NewEngine(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet}); err == nil {
		t.Fatal("NewEngine started with a failing test")
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(files fstest.MapFS) {
		for p, f := range files {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(tinyPolicy("10", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := policy.NewEngine(ctx, os.DirFS(dir), policy.Options{Timeout: testTimeout, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v0 := e.Current().Version
	reloaded := make(chan *policy.Bundle, 4)
	e.OnChange(func(_, new *policy.Bundle, _ error) { reloaded <- new })
	done := make(chan struct{})
	go func() { e.Watch(ctx, dir, 20*time.Millisecond); close(done) }()

	write(tinyPolicy("20", "1"))
	select { // the event, not a time: the engine tells its hook
	case b := <-reloaded:
		if b == nil || b.Version == v0 || e.Current().Version != b.Version {
			t.Fatalf("Watch reloaded %v; status %+v", b, e.Status())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Watch did not reload; status %+v", e.Status())
	}
	cancel()
	<-done
}

func BenchmarkDecide(b *testing.B) {
	bundle := benchEmbedded(b)
	in := s03(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := bundle.Decide(ctx, in)
		if err != nil || !d.Allow {
			b.Fatalf("decision %+v, %v", d, err)
		}
	}
}

// Each decision on a fresh goroutine, as each request arrives: the
// evaluation stack is not grown again for every decision (evaluator.go).
func BenchmarkDecideFreshGoroutine(b *testing.B) {
	bundle := benchEmbedded(b)
	in := s03(b)
	ctx := context.Background()
	b.ReportAllocs()
	done := make(chan error)
	for b.Loop() {
		go func() {
			d, err := bundle.Decide(ctx, in)
			if err == nil && !d.Allow {
				err = errors.New("denied")
			}
			done <- err
		}()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// tinyScenario is a scenario of tinyPolicy: message n, and whether it is
// allowed.
func tinyScenario(n int, allow bool) []byte {
	return []byte(fmt.Sprintf(`{"name": "n=%d", "input": {"now": "2026-12-01T00:00:00Z", "message": {"n": %d}}, "expect": {"allow": %t}}`, n, n, allow))
}

// Every scenario input in turn. Besides the mean (ns/op) it reports the
// median of the decisions' times (median-ns/decision): the scenarios range
// from a message denied before any field is read to a referral with every
// section, and the median is the figure of issue 13.
func BenchmarkDecideScenarios(b *testing.B) {
	bundle := benchEmbedded(b)
	names, err := policy.ScenarioFiles(policies.FS(), policy.ScenarioDir)
	if err != nil {
		b.Fatal(err)
	}
	inputs := make([]policy.Input, len(names))
	for i, name := range names {
		s, err := policy.LoadScenario(policies.FS(), name)
		if err != nil {
			b.Fatal(err)
		}
		inputs[i] = s.Input
	}
	ctx := context.Background()
	times := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		if _, err := bundle.Decide(ctx, inputs[i%len(inputs)]); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		i++
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns/decision")
}
