package policy_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xborder/xborder/gateway/policy"
)

// tinyPolicy is a policy of one rule with one Rego test, so that the
// engine's mechanics are tested in milliseconds.
func tinyPolicy(limit, testLimit string) fstest.MapFS {
	return fstest.MapFS{
		"decision.rego": {Data: []byte(`package xborder

decision := {"allow": input.message.n < ` + limit + `, "reasons": [], "redact": [], "obligations": {"retention_days": 1, "review": false}}
`)},
		"decision_test.rego": {Data: []byte(`package xborder_test

import data.xborder

test_small if xborder.decision.allow with input as {"message": {"n": ` + testLimit + `}}
`)},
	}
}

// A version that passed once is not tested again under the same program;
// a changed one is; a failing one is never remembered.
func TestVerdictsRemembered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := policy.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Verdicts: policy.Verdicts{Dir: dir}}
	const skipped = "passed its tests and scenarios before"

	if _, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), opts); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), skipped) {
		t.Fatal("the first start skipped the tests")
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("%d verdicts remembered, want 1", len(files))
	}
	logs.Reset()
	e, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), skipped) {
		t.Fatal("the second start ran the tests again")
	}

	// A failing version is tested (and refused) however often it comes.
	for range 2 {
		logs.Reset()
		if err := e.Reload(ctx, tinyPolicy("10", "11")); err == nil || strings.Contains(logs.String(), skipped) {
			t.Fatalf("a failing version: err %v, logs %s", err, logs.String())
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("%d verdicts remembered after a failure, want 1", len(files))
	}
	// A changed, passing version is tested, then remembered.
	logs.Reset()
	if err := e.Reload(ctx, tinyPolicy("20", "1")); err != nil || strings.Contains(logs.String(), skipped) {
		t.Fatalf("a changed version: err %v, logs %s", err, logs.String())
	}
	if files, _ := os.ReadDir(dir); len(files) != 2 {
		t.Fatalf("%d verdicts remembered, want 2", len(files))
	}
	// No folder: nothing is remembered, every start tests.
	logs.Reset()
	if _, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), policy.Options{Logger: opts.Logger}); err != nil || strings.Contains(logs.String(), skipped) {
		t.Fatalf("without verdicts: %v %s", err, logs.String())
	}
}

// A remembered verdict under another program does not count.
func TestVerdictOfAnotherProgram(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := policy.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Verdicts: policy.Verdicts{Dir: dir}}
	if _, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), opts); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(dir)
	b, err := os.ReadFile(dir + "/" + files[0].Name())
	if err != nil {
		t.Fatal(err)
	}
	// Same file name, another program's digest inside.
	forged := strings.Replace(string(b), `"program":"`, `"program":"0`, 1)
	if err := os.WriteFile(dir+"/"+files[0].Name(), []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), opts); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "passed its tests and scenarios before") {
		t.Fatal("a verdict of another program was trusted")
	}
}
