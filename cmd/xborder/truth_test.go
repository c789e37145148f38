package main

// Issue 24: every command does what it was asked or says plainly why not,
// and touches nothing first. Each test runs the built binary, off the
// README's happy path.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// runBin runs the built binary in dir (the test's folder when empty) with
// extra environment and returns stdout, stderr and the exit code.
func runBin(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// With an explicit --ops URL or --config, nothing answering there is an
// error naming the address: the local store (here a development store in
// the working folder) is never read instead. The development default says
// that it falls back, and --offline reads a stopped gateway's store.
func TestExplicitGatewayNeverFallsBack(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	m := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYOPS", "CANARYFALL"), "record": map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	if r, err := env.Client("UN-UNICEF").Send(t.Context(), m); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %v", err, r)
	}
	cfg := gatewayConfig(t, env, freeAddr(t))
	env.Stop()

	// A working folder whose development default is that store.
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(env.PKI, filepath.Join(work, "certs", "dev")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(filepath.Dir(env.PKI), "data"), filepath.Join(work, "data")); err != nil {
		t.Fatal(err)
	}
	devEnv := []string{"XBORDER_OPS_LISTEN=" + freeAddr(t)}
	nobody := "http://" + freeAddr(t)
	export := filepath.Join(work, "export.jsonl")
	for _, args := range [][]string{
		{"audit", "verify", "--ops", nobody},
		{"audit", "export", "--ops", nobody, "--out", export},
		{"audit", "subject", "--ops", nobody, "--ref", "S-1"},
		{"deadletters", "--ops", nobody},
		{"deadletters", "--ops", nobody, "--requeue", "UN-IOM/nope"},
	} {
		t.Run(strings.Join(args[:3], " "), func(t *testing.T) {
			out, errOut, code := runBin(t, work, devEnv, args...)
			if code != 2 || strings.Contains(errOut, "reading the store") || !strings.Contains(errOut, "no gateway answers at http://") ||
				!strings.Contains(errOut, "nothing was read") {
				t.Errorf("exit %d, want 2 naming the address\nstdout: %s\nstderr: %s", code, out, errOut)
			}
		})
	}
	if _, err := os.Stat(export); err == nil {
		t.Error("audit export made its output file although nothing was exported")
	}

	// The development default falls back, and says that it does.
	out, errOut, code := runBin(t, work, devEnv, "audit", "verify")
	if code != 0 || !strings.Contains(out, "audit log verified") || !strings.Contains(errOut, "development default") {
		t.Errorf("development default: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// A gateway named by --config that does not answer is read through
	// its own store (the config's, not the development default's), and
	// it says so.
	for _, args := range [][]string{{"audit", "verify", "--config", cfg}, {"deadletters", "--config", cfg}} {
		out, errOut, code := runBin(t, work, devEnv, args...)
		if code != 0 || !strings.Contains(errOut, "reading the store") || !strings.Contains(errOut, cfg) {
			t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
	}
	// A stopped gateway's store, asked for: --offline.
	out, errOut, code = runBin(t, work, nil, "audit", "verify", "--config", cfg, "--offline")
	if code != 0 || !strings.Contains(out, "audit log verified") || !strings.Contains(errOut, "reading the store") {
		t.Errorf("--config --offline: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, errOut, code := runBin(t, work, nil, "audit", "verify", "--ops", nobody, "--offline"); code != 2 || !strings.Contains(errOut, "--offline") {
		t.Errorf("--ops with --offline: exit %d: %s", code, errOut)
	}
}

// send with the gateway stopped retries every request (the key fetch
// too) as documented, then names the address and how to start the
// gateway; inbox takes the same care.
func TestSendRetriesAStoppedGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out send's three backoffs (2-3.5 s)")
	}
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if _, errOut, code := runBin(t, dir, nil, "pki", "init", "--dir", pkiDir, "--participants", "UN-UNICEF,KZ-MJ"); code != 0 {
		t.Fatalf("pki init: %s", errOut)
	}
	addr := freeAddr(t) // nothing listens there
	example := filepath.Join(gatewaytest.RepoRoot(), "cmd", "xborder", "examples", "verify-request.json")
	out, errOut, code := runBin(t, dir, nil, "send", "--as", "UN-UNICEF", "--to", "KZ-MJ", "--type", "identity.verification.request",
		"--purpose", "identity-verification", "--pki", pkiDir, "--gateway", "https://"+addr, example)
	retries := strings.Count(errOut, "trying again in")
	if code != 2 || retries != 3 || !strings.Contains(errOut, addr) || !strings.Contains(errOut, "go run ./cmd/xborder serve") {
		t.Errorf("send: exit %d, %d retries (want 3)\nstdout: %s\nstderr: %s", code, retries, out, errOut)
	}
	out, errOut, code = runBin(t, dir, nil, "inbox", "--as", "KZ-MJ", "--pki", pkiDir, "--gateway", "https://"+addr, "--retries", "1")
	retries = strings.Count(errOut, "trying again in")
	if code != 2 || retries != 1 || !strings.Contains(errOut, addr) || !strings.Contains(errOut, "go run ./cmd/xborder serve") {
		t.Errorf("inbox: exit %d, %d retries (want 1)\nstdout: %s\nstderr: %s", code, retries, out, errOut)
	}
}

// The small ones of issue 24.
func TestSmallTruths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// -o, --out and --output mean the same in send and in audit export.
	for _, args := range [][]string{
		{"send", "--out", "id", "--help"},
		{"send", "--output", "id", "--help"},
		{"audit", "export", "--output", "x", "--help"},
		{"audit", "export", "--out", "x", "--help"},
		{"audit", "export", "-o", "x", "--help"},
	} {
		if out, errOut, code := runBin(t, dir, nil, args...); code != 0 {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}

	// version --json keeps commit when it is unknown.
	out, _, _ := runBin(t, dir, nil, "version", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["commit"] == nil || v["commit"] == "" {
		t.Errorf("version --json without a commit: %v %s", err, out)
	}

	// send without FILE says what is missing.
	_, errOut, code := runBin(t, dir, nil, "send", "--as", "UN-UNICEF", "--to", "KZ-MJ", "--type", "t", "--purpose", "p")
	if code != 2 || strings.Contains(errOut, "accepts 1 arg") || !strings.Contains(errOut, "FILE") {
		t.Errorf("send without FILE: exit %d: %s", code, errOut)
	}

	// health: nothing answering is 1 (2 is Docker's reserved code).
	_, errOut, code = runBin(t, dir, nil, "health", "--ops", "http://"+freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "no gateway answers") {
		t.Errorf("health with nothing answering: exit %d: %s", code, errOut)
	}
}

// deadletters --requeue of an unknown dead letter answers in one form,
// through the gateway and in the store.
func TestRequeueUnknownOneForm(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	cfg := gatewayConfig(t, env, env.Gateway.OpsAddr())
	through, errOut, code := runBin(t, "", nil, "deadletters", "--config", cfg, "--requeue", "UN-IOM/nope")
	if code != 1 {
		t.Fatalf("through the gateway: exit %d\n%s%s", code, through, errOut)
	}
	env.Stop()
	store, errOut, code := runBin(t, "", nil, "deadletters", "--config", cfg, "--offline", "--requeue", "UN-IOM/nope")
	if code != 1 || store != through || store != "no dead letter UN-IOM/nope\n" {
		t.Errorf("in the store: exit %d %q, through the gateway %q\n%s", code, store, through, errOut)
	}
}
