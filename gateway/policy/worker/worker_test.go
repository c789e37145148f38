package worker_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
	"github.com/xborder/xborder/policies"
)

// TestMain lets the test binary be the worker: Start runs os.Executable()
// with "policy worker".
func TestMain(m *testing.M) {
	worker.RunIfChild()
	os.Exit(m.Run())
}

func scenarioInput(t *testing.T, name string) policy.Input {
	t.Helper()
	s, err := policy.LoadScenario(policies.FS(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.Input
}

// The shipped policy decides in the worker as in the gateway.
func TestWorkerDecidesAsTheGateway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, err := worker.Start(ctx, worker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := w.Load(ctx, policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	live, err := policy.Compile(ctx, policies.FS(), policy.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != live.Version {
		t.Errorf("version %s in the worker, %s here", b.Version, live.Version)
	}
	in := scenarioInput(t, "scenarios/s02/s02.json")
	got, err := b.Decide(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := live.Decide(ctx, in)
	if got.Allow != want.Allow || strings.Join(got.Rules(), " ") != strings.Join(want.Rules(), " ") {
		t.Errorf("worker %+v, gateway %+v", got, want)
	}
	t.Logf("landlock ABI %d", w.Landlock())
}

// withModule is the shipped policy plus one module.
func withModule(t *testing.T, name, src string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	for _, p := range []string{"data.json"} {
		b, err := policyBytes(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = &fstest.MapFile{Data: b}
	}
	out[name] = &fstest.MapFile{Data: []byte(src)}
	return out
}

func policyBytes(p string) ([]byte, error) {
	f, err := policies.FS().Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, _ := f.Stat()
	b := make([]byte, st.Size())
	_, err = f.Read(b)
	return b, err
}

// A built-in that ignores the deadline (a JSON Schema whose anyOf recurses
// through "#": twice the work for each level of the value) is stopped by
// killing the worker at its deadline; the next request says why.
func TestWorkerKilledAtItsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, err := worker.Start(ctx, worker.Options{Limits: worker.Limits{Decision: 200 * time.Millisecond, DecisionGrace: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := w.Load(ctx, withModule(t, "wedge.rego", WedgeModule))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d, err := b.Decide(ctx, scenarioInput(t, "scenarios/s02/s02.json"))
	var died *worker.DiedError
	if !errors.As(err, &died) || !strings.Contains(died.Reason, "deadline") {
		t.Fatalf("err = %v (%+v after %v)", err, d, time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("killed after %v", took)
	}
	if _, err := b.Decide(ctx, policy.Input{}); !errors.Is(err, worker.ErrDied) {
		t.Errorf("after its death: %v", err)
	}
}

// A memory bomb the size checks do not see (a string of 1 GB) ends in the worker's address-space limit, not the gateway's.
func TestWorkerMemoryBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the worker's 128 MiB")
	}
	t.Parallel()
	ctx := context.Background()
	w, err := worker.Start(ctx, worker.Options{Limits: worker.Limits{Memory: 128 << 20, Decision: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := w.Load(ctx, withModule(t, "bomb.rego", BombModule))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Decide(ctx, scenarioInput(t, "scenarios/s02/s02.json"))
	var died *worker.DiedError
	if !errors.As(err, &died) || !strings.Contains(died.Reason, "memory limit (128 MiB)") {
		t.Fatalf("err = %v", err)
	}
}

// WedgeModule's decision runs a JSON Schema check for ever: each of 60
// levels of the value is tried against two branches that both recurse.
const WedgeModule = `package xborder

import rego.v1

_deep := json.unmarshal(concat("", [concat("", [` + "`" + `{"a":` + "`" + ` | some _ in numbers.range(1, 60)]), "0", concat("", ["}" | some _ in numbers.range(1, 60)])]))

_schema := {"anyOf": [
	{"type": "object", "required": ["a"], "properties": {"a": {"$ref": "#"}}},
	{"type": "object", "required": ["a"], "properties": {"a": {"$ref": "#"}}},
	{"type": "string"},
]}

decision := {"allow": false, "reasons": [{"rule": "R1", "message": "wedged"}], "redact": [], "obligations": {"retention_days": 0, "review": false}} if {
	[ok, _] := json.match_schema([_deep, input.now][0], _schema)
	ok
}
`

// BombModule's decision builds a string of 1 GB, a thousand copies of a
// thousand copies of ten bytes: no range is large.
const BombModule = `package xborder

import rego.v1

_kb := concat("", ["0123456789" | some _ in numbers.range(1, 100)])

decision := {"allow": count(_gb) > 0, "reasons": [], "redact": [], "obligations": {"retention_days": 0, "review": false}} if {
	mb := concat("", [concat("", [_kb, input.now]) | some _ in numbers.range(1, 1000)])
	_gb := concat("", [mb | some _ in numbers.range(1, 1000)])
}
`

// A worker started Idle runs every thread in SCHED_IDLE (policy 5 in
// /proc/PID/task/TID/stat); one started without it keeps the normal
// policy (0), as the tests of a policy about to serve need.
func TestWorkerIdle(t *testing.T) {
	t.Parallel()
	for _, idle := range []bool{false, true} {
		w, err := worker.Start(context.Background(), worker.Options{Idle: idle})
		if err != nil {
			t.Fatal(err)
		}
		policies, err := threadPolicies(w.Pid())
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := "0"
		if idle {
			want = "5"
		}
		for tid, p := range policies {
			if p != want {
				t.Errorf("Idle %t: thread %s has policy %s, want %s", idle, tid, p, want)
			}
		}
		if len(policies) == 0 {
			t.Errorf("Idle %t: no threads read", idle)
		}
	}
}

// threadPolicies reads the scheduling policy of each thread of pid.
func threadPolicies(pid int) (map[string]string, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // a thread that ended meanwhile
		}
		// Fields after the command's closing parenthesis start at the
		// third; the policy is the 41st.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 38 {
			out[task.Name()] = f[38]
		}
	}
	return out, nil
}
