package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/policy/worker"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	// The gateways some tests start in this process run their workers
	// from this test binary.
	worker.RunIfChild()
	dir, err := os.MkdirTemp("", "xborder-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "xborder")
	// Every gateway these tests start (and the gateways bench starts) runs
	// this one binary: the policy's verdict is remembered once for all of
	// them, as it would be across restarts of one deployment.
	if err := os.Setenv("XBORDER_POLICY_VERDICTS", filepath.Join(dir, "policy-verdicts")); err != nil {
		panic(err)
	}
	// `go run` keeps the executable it links in the build cache, keyed by
	// its content: an unchanged program is linked once, not once per test
	// run. -exec hands that executable to cp, which copies it here.
	build := exec.Command("go", "run", "-exec", "cp", ".", binary)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building xborder:", err)
		os.Exit(1)
	}
	code := gatewaytest.Main(m) // and removes what its in-process gateways shared
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// verdictGate is held by the first gateway process these tests start
// until it has tested the policy and remembered its verdict in TestMain's
// folder: gateway processes started meanwhile would each test it again.
var verdictGate struct {
	sync.Mutex
	warm bool
}

// firstGateway waits while the first gateway process tests the policy. The
// caller then starts its own and calls release once that process is past
// the policy's tests (ready, or told to stop).
func firstGateway() (release func()) {
	verdictGate.Lock()
	if verdictGate.warm {
		verdictGate.Unlock()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			verdictGate.warm = true
			verdictGate.Unlock()
		})
	}
}

// serveProcess runs `xborder serve` as a real process in dir and waits
// until /readyz answers 200.
func serveProcess(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	// A generous decision deadline (gatewaytest.TestPolicyTimeout), unless
	// the test sets one: start-up runs every scenario under it.
	cmd.Env = append(os.Environ(), "XBORDER_POLICY_TIMEOUT="+gatewaytest.TestPolicyTimeout.String())
	cmd.Env = append(cmd.Env, env...)
	logf, err := os.OpenFile(filepath.Join(dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	release := firstGateway()
	defer release()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
	})
	var ops string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "XBORDER_OPS_LISTEN="); ok {
			ops = v
		}
	}
	if ops == "" {
		t.Fatal("serveProcess needs XBORDER_OPS_LISTEN")
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	t.Fatalf("gateway did not become ready:\n%s", logs)
	return nil
}

// shellBlock returns the first ```sh block after the heading.
func shellBlock(t *testing.T, readme, heading string, nth int) string {
	t.Helper()
	i := strings.Index(readme, heading)
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	rest := readme[i:]
	for n := 0; ; n++ {
		j := strings.Index(rest, "```sh\n")
		if j < 0 {
			t.Fatalf("no sh block %d after %q", nth, heading)
		}
		rest = rest[j+len("```sh\n"):]
		k := strings.Index(rest, "```")
		if n == nth {
			return rest[:k]
		}
		rest = rest[k+3:]
	}
}

// The README's walkthrough, run as pasted (the binary is prebuilt, so its
// `go build` line is skipped) against `xborder serve` with no config: the
// development setup on the demo federation.
func TestReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	root := gatewaytest.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"cmd", "policies"} {
		if err := os.Symlink(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binary, filepath.Join(dir, "xborder")); err != nil {
		t.Fatal(err)
	}
	env := []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t)}
	serveProcess(t, dir, env)
	if _, err := os.Stat(filepath.Join(dir, "certs", "dev", "registry.yaml")); err != nil {
		t.Fatalf("serve did not make the development PKI: %v", err)
	}
	// The first start says what it made.
	first, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	for _, want := range []string{"development PKI made", "ops.token", "store file created"} {
		if !bytes.Contains(first, []byte(want)) {
			t.Errorf("the first start did not log %q:\n%s", want, first)
		}
	}

	script := shellBlock(t, string(readme), "## Walkthrough", 0)
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(l, "go build ") {
			continue
		}
		lines = append(lines, l)
	}
	out := runScript(t, dir, env, strings.Join(lines, "\n"), 0)
	// Step 2 printed the request, minimised; step 4 the answer.
	var deliveries []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d map[string]any
		if json.Unmarshal(sc.Bytes(), &d) == nil && d["delivery_id"] != nil {
			deliveries = append(deliveries, d)
		}
	}
	if len(deliveries) != 2 {
		t.Fatalf("want 2 deliveries printed, got %d:\n%s", len(deliveries), out)
	}
	req, ans := deliveries[0]["message"].(map[string]any), deliveries[1]["message"].(map[string]any)
	if req["type"] != "identity.verification.request" || req["subject"].(map[string]any)["location"] != nil {
		t.Errorf("request delivered as %v", req)
	}
	if ans["type"] != "identity.verification.response" || ans["record"].(map[string]any)["outcome"] != "match" {
		t.Errorf("answer delivered as %v", ans)
	}
	if !strings.Contains(out, "accepted") {
		t.Errorf("no acceptance printed:\n%s", out)
	}

	// The refusal example exits 1 and prints the problem with R6.
	refusal := runScript(t, dir, env, shellBlock(t, string(readme), "## Walkthrough", 1), 1)
	if !strings.Contains(refusal, `"policy_denied"`) || !strings.Contains(refusal, `"R6"`) {
		t.Errorf("refusal printed:\n%s", refusal)
	}

	// Every line the real binary logged in this run is one JSON object
	// with no key twice (strict JSON consumers drop such lines).
	logs, err := os.ReadFile(filepath.Join(dir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gatewaytest.CheckLogLines(logs); err != nil {
		t.Error(err)
	}
	if !bytes.Contains(logs, []byte(`"decision"`)) {
		t.Errorf("the run logged no decision record:\n%s", logs)
	}
}

func runScript(t *testing.T, dir string, env []string, script string, wantExit int) string {
	t.Helper()
	cmd := exec.Command("bash", "-eu", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != wantExit {
		t.Fatalf("script exited %d, want %d:\n%s\n--- output:\n%s", code, wantExit, script, out.String())
	}
	return out.String()
}

// kill -9 after a 202 loses nothing: every accepted message is in the
// recipient's inbox after a restart.
func TestKill9LosesNothing(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a crash test: kills the built binary with SIGKILL and restarts it")
	}
	dir := t.TempDir()
	if code := run([]string{"pki", "init", "--dir", filepath.Join(dir, "pki")}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	cfg := fmt.Sprintf("registry: pki/registry.yaml\ngateway_keys: pki/gateway\npolicies: %s\nstore: bolt:data/xborder.db\npolicy_watch: 0s\n",
		filepath.Join(gatewaytest.RepoRoot(), "policies"))
	if err := os.WriteFile(filepath.Join(dir, "xborder.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	api := freeAddr(t)
	env := []string{"XBORDER_LISTEN=" + api, "XBORDER_OPS_LISTEN=" + freeAddr(t)}
	proc := serveProcess(t, dir, env, "--config", "xborder.yaml")

	me, err := client.LoadIdentity(filepath.Join(dir, "pki"), "UN-UNICEF")
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New("https://"+api, me)
	ctx := context.Background()
	const n = 60
	accepted := map[string]bool{}
	for i := 0; i < n; i++ {
		m := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
			"subject": gatewaytest.ChildSubject("CANARYKILL", "CANARYNINE"),
			"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
		})
		r, err := cl.Send(ctx, m)
		if err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("send %d: %v %v", i, err, r)
		}
		accepted[m["id"].(string)] = true
	}
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = proc.Process.Wait()

	serveProcess(t, dir, env, "--config", "xborder.yaml")
	reg, err := client.LoadIdentity(filepath.Join(dir, "pki"), "KZ-MJ")
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New("https://"+api, reg)
	delivered := map[string]bool{}
	for len(delivered) < n {
		ds, err := rc.Inbox(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			delivered[d.MessageID] = true
			if err := rc.Ack(ctx, d.DeliveryID); err != nil {
				t.Fatal(err)
			}
		}
	}
	missing := 0
	for id := range accepted {
		if !delivered[id] {
			missing++
		}
	}
	t.Logf("accepted %d, delivered after kill -9 and restart %d", len(accepted), len(delivered))
	if missing > 0 {
		t.Fatalf("%d accepted messages lost", missing)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	if bytes.Contains(logs, []byte("CANARY")) {
		t.Error("personal data reached the gateway's log")
	}
}

func TestPolicyCommands(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs the policy's whole test suite (gateway/policy's TestBundleTest runs it under -short)")
	}
	var out bytes.Buffer
	if code := run([]string{"policy", "test"}, &out, &out); code != 0 {
		t.Fatalf("policy test exit %d:\n%s", code, out.String())
	}
	scenario := filepath.Join(gatewaytest.RepoRoot(), "policies", "scenarios", "s02", "s02.json")
	out.Reset()
	var errb bytes.Buffer
	if code := run([]string{"policy", "eval", "--input", scenario}, &out, &errb); code != 0 {
		t.Fatalf("policy eval exit %d:\n%s%s", code, out.String(), errb.String())
	}
	var got struct {
		Decision struct {
			Allow   bool `json:"allow"`
			Reasons []struct {
				Rule string `json:"rule"`
			} `json:"reasons"`
		} `json:"decision"`
		PolicyVersion string `json:"policy_version"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if got.Decision.Allow || len(got.Decision.Reasons) == 0 || got.PolicyVersion == "" {
		t.Errorf("s02 decision: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"policy", "eval", "--input", filepath.Join(t.TempDir(), "missing.json")}, &out, &out); code == 0 {
		t.Error("eval of a missing file succeeded")
	}
}

func TestPKIInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	var out bytes.Buffer
	if code := run([]string{"pki", "init", "--dir", dir, "--participants", "UN-UNICEF,KZ-MJ"}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if _, err := audit.LoadKey(filepath.Join(dir, "gateway", "audit.key")); err != nil {
		t.Errorf("audit key: %v", err)
	}
	for _, f := range []string{"ca.crt", "registry.yaml", "gateway/sign.jwk", "UN-UNICEF/tls.key", "KZ-MJ/enc.pub.jwk"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "UN-IOM")); err == nil {
		t.Error("a participant that was not asked for was made")
	}
	if code := run([]string{"pki", "init", "--dir", dir, "--participants", "XX"}, &out, &out); code == 0 {
		t.Error("an invalid participant id was accepted")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := [][]string{
		{"send", "--as", "UN-UNICEF"},
		{"inbox"},
		{"nosuchcommand"},
		{"serve", "--config", "/nonexistent.yaml"},
	}
	for _, args := range cases {
		var out bytes.Buffer
		if code := run(args, &out, &out); code == 0 {
			t.Errorf("%v succeeded", args)
		}
	}
}

// .ci/run installs every Debian package the README names for the tests and
// runs exactly the README's test command.
func TestCIRunMatchesReadme(t *testing.T) {
	t.Parallel()
	root := gatewaytest.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	testCmd := strings.TrimSpace(shellBlock(t, string(readme), "## Two commands", 1))
	if testCmd != "go test ./..." {
		t.Fatalf("README's test command is %q", testCmd)
	}
	if inner := strings.TrimSpace(shellBlock(t, string(readme), "## Two commands", 2)); inner != "go test -short ./..." {
		t.Errorf("README's inner loop is %q, want %q", inner, "go test -short ./...")
	}
	var ran bool
	for _, l := range strings.Split(string(ci), "\n") {
		if strings.TrimSpace(l) == testCmd {
			ran = true
		}
	}
	if !ran {
		t.Errorf(".ci/run does not run %q", testCmd)
	}
	i := strings.Index(string(readme), "On Debian: `apt-get install -y ")
	if i < 0 {
		t.Fatal("README names no Debian packages")
	}
	line := string(readme)[i+len("On Debian: `apt-get install -y "):]
	for _, pkg := range strings.Fields(line[:strings.Index(line, "`")]) {
		if !strings.Contains(string(ci), "need_apt+=("+pkg+")") {
			t.Errorf(".ci/run does not install %s", pkg)
		}
	}
}
