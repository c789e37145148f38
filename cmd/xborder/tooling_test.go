package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	pv, _ := policy.Digest(policies.FS())
	if v["go_version"] != runtime.Version() || v["policy_version"] != pv || v["version"] == "" {
		t.Errorf("version: %s", out)
	}
	text, _ := exec.Command(binary, "version").Output()
	for _, want := range []string{"xborder ", "commit ", runtime.Version(), "embedded policy " + pv} {
		if !strings.Contains(string(text), want) {
			t.Errorf("version lacks %q:\n%s", want, text)
		}
	}
}

// The exit codes the README documents: 0 done, 1 a negative answer (a
// refusal, a broken chain, a failed policy test, not ready, not found), 2
// a usage or operational error. (130, serve interrupted while starting, is
// TestServeInterruptedWhileStarting's.)
func TestExitCodes(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"version"}, 0},
		{[]string{"health", "--ops", env.OpsURL()}, 0},
		{[]string{"nosuchcommand"}, 2},
		{[]string{"send", "--bogus"}, 2},
		{[]string{"health", "--ops", "http://" + freeAddr(t)}, 1},
		{[]string{"deadletters", "--requeue", "nonsense"}, 2},
		{[]string{"send", "--as", "KZ-MVD", "--to", "UZ-MVD", "--type", "identity.verification.request", "--purpose", "border-screening",
			"--pki", env.PKI, "--gateway", env.URL(), filepath.Join(gatewaytest.RepoRoot(), "cmd", "xborder", "examples", "verify-request.json")}, 1},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args[:1], " "), func(t *testing.T) {
			cmd := exec.Command(binary, tc.args...)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.code {
				t.Errorf("%v: exit %d, want %d\n%s", tc.args, got, tc.code, out)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	out, errOut, code := runCLI("health", "--ops", env.OpsURL())
	if code != 0 || !strings.Contains(out, `"ready": true`) {
		t.Errorf("ready gateway: %d %s %s", code, out, errOut)
	}
	env.Stop()
	if _, errOut, code := runCLI("health", "--ops", env.OpsURL()); code != 1 || !strings.Contains(errOut, "no gateway answers") {
		t.Errorf("stopped gateway: %d %s", code, errOut)
	}
}

// An empty inbox says so on stderr; stdout stays JSON lines (none).
func TestInboxEmpty(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	out, errOut, code := runCLI("inbox", "--as", "KZ-MJ", "--pki", env.PKI, "--gateway", env.URL())
	if code != 0 || out != "" || !strings.Contains(errOut, "no deliveries for KZ-MJ") {
		t.Errorf("exit %d\nstdout: %q\nstderr: %s", code, out, errOut)
	}
}

// send without its flags and without its file names the missing flags
// first; with the flags, the missing file.
func TestSendReportsFlagsBeforeFile(t *testing.T) {
	t.Parallel()
	_, errOut, code := runCLI("send", "--as", "UN-UNICEF")
	if code != 2 || !strings.Contains(errOut, `required flag(s) "purpose", "to", "type" not set`) {
		t.Errorf("no flags, no file: %d %s", code, errOut)
	}
	_, errOut, code = runCLI("send", "--as", "UN-UNICEF", "--to", "KZ-MJ", "--type", "t", "--purpose", "p")
	if code != 2 || !strings.Contains(errOut, "FILE is missing") {
		t.Errorf("flags, no file: %d %s", code, errOut)
	}
}

func TestBenchHelp(t *testing.T) {
	t.Parallel()
	out, _, code := runCLI("bench", "--help")
	if code != 0 || strings.Contains(out, "--opa opa") || !strings.Contains(out, "--opa string") {
		t.Errorf("bench --help (%d):\n%s", code, out)
	}
}

// Shell completion of --as, --to, --purpose and --type values from the
// registry and the policy data.
func TestFlagValueCompletion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code := run([]string{"pki", "init", "--dir", filepath.Join(dir, "pki"), "--participants", "UN-UNICEF,KZ-MJ,KZ-MVD"}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatal("pki init")
	}
	cases := []struct {
		args      []string
		want, not []string
	}{
		{[]string{"send", "--pki", filepath.Join(dir, "pki"), "--to", "KZ"}, []string{"KZ-MJ", "KZ-MVD"}, []string{"UN-UNICEF", "UZ-MVD"}},
		{[]string{"inbox", "--pki", filepath.Join(dir, "pki"), "--as", ""}, []string{"UN-UNICEF", "KZ-MJ"}, []string{"UN-IOM"}},
		{[]string{"send", "--to", "UN-"}, []string{"UN-IOM", "UN-UNICEF"}, []string{"KZ-MJ"}}, // the demo federation
		{[]string{"send", "--purpose", ""}, []string{"identity-verification", "family-tracing", "border-screening"}, nil},
		{[]string{"send", "--purpose", "identity-verification", "--type", ""}, []string{"identity.verification.request", "identity.verification.response"}, []string{"referral"}},
		{[]string{"send", "--type", "ref"}, []string{"referral", "referral.response"}, []string{"consent.withdrawal"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, _ := runCLI(append([]string{"__complete"}, tc.args...)...)
			var got []string
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				v, _, _ := strings.Cut(sc.Text(), "\t")
				got = append(got, v)
			}
			for _, w := range tc.want {
				if !contains(got, w) {
					t.Errorf("completion lacks %s: %v %s", w, got, errOut)
				}
			}
			for _, n := range tc.not {
				if contains(got, n) {
					t.Errorf("completion offers %s: %v", n, got)
				}
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// hasPolicyWorker reports whether the process pid has started its policy
// worker (`xborder policy worker`), which runs a new policy's tests.
func hasPolicyWorker(pid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, not ")".
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		args, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if bytes.Contains(args, []byte("policy\x00worker")) {
			return true
		}
	}
	return false
}

// Ctrl-C while serve starts (the policy's tests running) prints one plain
// line and exits 130, not a policy test failure.
func TestServeInterruptedWhileStarting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(gatewaytest.RepoRoot(), "policies"), filepath.Join(dir, "policies")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve")
	cmd.Dir = dir
	// No remembered verdict: the policy's tests run at this start, in a
	// worker process, and the interrupt comes while they run.
	cmd.Env = append(os.Environ(), "XBORDER_LISTEN="+freeAddr(t), "XBORDER_OPS_LISTEN="+freeAddr(t), "XBORDER_POLICY_TIMEOUT=30s",
		"XBORDER_POLICY_VERDICTS=off")
	var errOut gatewaytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &errOut, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !hasPolicyWorker(cmd.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	logs := errOut.String()
	if strings.Contains(logs, "gateway serving") {
		t.Skip("the gateway finished starting before the interrupt arrived")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(logs, "interrupted while starting") ||
		strings.Contains(logs, "scenario failures") || strings.Contains(logs, "context canceled") {
		t.Errorf("exit %d:\n%s", code, logs)
	}
}
