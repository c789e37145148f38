package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// runBinary runs the built xborder in dir with env added and returns its
// stdout and stderr together, and its exit code.
func runBinary(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	// A command that should have stopped but serves is stopped, and fails
	// the test by its exit code.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// files lists what dir holds, recursively, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if rel, _ := filepath.Rel(dir, p); err == nil && rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// servePKI makes a development PKI in dir/pki and a config using it, the
// repository's policies and a bolt store in dir/data, plus extra lines.
func servePKI(t *testing.T, dir, extra string) (cfgPath, dbPath string) {
	t.Helper()
	pkiDir := filepath.Join(dir, "pki")
	if code := run([]string{"pki", "init", "--dir", pkiDir}, io.Discard, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	dbPath = filepath.Join(dir, "data", "xborder.db")
	return writeRedisConfig(t, dir, pkiDir, "bolt:"+dbPath, extra), dbPath
}

// `xborder serve` (the development setup) outside the repository's top:
// it stops naming the missing folder and what to do, and makes nothing —
// no development PKI, no store.
func TestServeOutsideTheRepositoryMakesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := runBinary(t, dir, []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t)}, "serve")
	if code != 2 || !strings.Contains(out, filepath.Join(dir, "policies")+" does not exist") ||
		!strings.Contains(out, "repository's top") || !strings.Contains(out, "--config") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "stat .") {
		t.Errorf("an error without its path:\n%s", out)
	}
	if got := files(t, dir); len(got) > 0 {
		t.Errorf("serve made %v before it stopped", got)
	}
}

// Config problems and missing inputs come all at once, each named by its
// YAML key and environment variable: an unknown key with the one meant, a
// value of the wrong type, range errors, a missing registry, missing key
// and policies folders, and an operator token others can read (refused,
// as ssh refuses such a private key). Nothing is made.
func TestServeReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := filepath.Join(dir, "ops.token")
	os.WriteFile(tok, []byte(strings.Repeat("a", 64)+"\n"), 0o644)
	os.Chmod(tok, 0o644)
	cfg := filepath.Join(dir, "xborder.yaml")
	os.WriteFile(cfg, []byte("listen_ops: 127.0.0.1:1\nbody_limit: big\nclock_skew: 5h\nregistry: nope/registry.yaml\n"+
		"gateway_keys: nope/gateway\npolicies: nope/policies\nstore: bolt:data/x.db\nops_token_file: ops.token\n"), 0o600)
	out, code := runBinary(t, dir, nil, "serve", "--config", cfg)
	if code != 2 {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		`unknown key "listen_ops" (did you mean "ops_listen"?)`,
		`body_limit (XBORDER_BODY_LIMIT): "big" is not a whole number`,
		"clock_skew (XBORDER_CLOCK_SKEW): 5h0m0s is not between 0 and 1h",
		"registry (XBORDER_REGISTRY): " + filepath.Join(dir, "nope", "registry.yaml") + " does not exist",
		"gateway_keys (XBORDER_GATEWAY_KEYS): " + filepath.Join(dir, "nope", "gateway") + " does not exist",
		"policies (XBORDER_POLICIES): " + filepath.Join(dir, "nope", "policies") + " does not exist",
		"ops_token_file (XBORDER_OPS_TOKEN_FILE): " + tok + " is readable by others than its owner",
		"chmod 600 " + tok,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "config.Config") {
		t.Errorf("a Go type name in:\n%s", out)
	}
	if got := files(t, dir); len(got) != 2 {
		t.Errorf("serve made files: %v", got)
	}
}

// An operator token readable by others is refused at start, alone too.
func TestServeRefusesAnOpsTokenOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := filepath.Join(dir, "ops.token")
	os.WriteFile(tok, []byte(strings.Repeat("b", 64)+"\n"), 0o600)
	os.Chmod(tok, 0o640)
	cfg, db := servePKI(t, dir, "ops_token_file: "+tok+"\n")
	out, code := runBinary(t, dir, []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t)}, "serve", "--config", cfg)
	if code != 2 || !strings.Contains(out, "chmod 600 "+tok) || !strings.Contains(out, "-rw-r-----") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("the store file was made")
	}
}

// A busy port and a Redis that is not durable are said before the policy
// is compiled and tested (no line of the policy component) and before the
// store's file is made.
func TestServeRefusesBeforeThePolicyRuns(t *testing.T) {
	t.Parallel()
	t.Run("busy port", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cfg, db := servePKI(t, dir, "")
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		out, code := runBinary(t, dir, []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + busy.Addr().String()},
			"serve", "--config", cfg)
		if code != 2 || !strings.Contains(out, "ops_listen (XBORDER_OPS_LISTEN): "+busy.Addr().String()+" cannot be listened on") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, `"component":"policy"`) {
			t.Errorf("the policy ran first:\n%s", out)
		}
		if _, err := os.Stat(db); err == nil {
			t.Error("the store file was made first")
		}
	})
	t.Run("redis not durable", func(t *testing.T) {
		t.Parallel()
		url := redistest.Start(t)
		o, _ := goredis.ParseURL(url)
		c := goredis.NewClient(o)
		defer c.Close()
		if err := c.ConfigSet(context.Background(), "appendfsync", "everysec").Err(); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cfg, _ := servePKI(t, dir, "")
		out, code := runBinary(t, dir, []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t), "XBORDER_STORE=" + url},
			"serve", "--config", cfg)
		if code != 2 || !strings.Contains(out, `appendfsync "everysec", want "always"`) {
			t.Errorf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, `"component":"policy"`) {
			t.Errorf("the policy ran first:\n%s", out)
		}
	})
}

// A Redis that refuses the gateway (protected mode) writes its reason and
// closes the connection; the gateway shows that reason, not the "broken
// pipe" of its own handshake. Protected mode refuses only non-loopback
// clients, so a listener on loopback answers as such a Redis does.
func TestServeShowsRedisRefusal(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const denied = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user."
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("-" + denied + "\r\n"))
			c.Close()
		}
	}()
	dir := t.TempDir()
	cfg, _ := servePKI(t, dir, "")
	out, code := runBinary(t, dir, []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t),
		"XBORDER_STORE=redis://" + ln.Addr().String() + "/0"}, "serve", "--config", cfg)
	if code != 2 || !strings.Contains(out, denied) || strings.Contains(out, "broken pipe") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// damageCheckpoint overwrites 200 bytes of the store's file from the
// start of the stored checkpoint's signature: the pages stay sound, the
// record does not decode.
func damageCheckpoint(t *testing.T, dbPath string) {
	t.Helper()
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte(`"signature":"`))
	if i < 0 {
		t.Fatal("no checkpoint in the file")
	}
	f, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte("}"), 200), int64(i)); err != nil {
		t.Fatal(err)
	}
}

// A store with 200 bytes overwritten (a checkpoint that no longer
// decodes): `store check` and `audit verify` exit 1 naming it; `serve`
// refuses to start on it, naming the problem and --serve-damaged; with
// --serve-damaged it serves, and the log, /readyz and a metric say so.
func TestDamagedStoreRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway process")
	}
	t.Parallel()
	dir := t.TempDir()
	cfgPath, dbPath := servePKI(t, dir, "")
	accepted(t, cfgPath, "m1", "m2")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gateway.OpenStore(context.Background(), cfg, gateway.StoreOptions{Replica: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	sign, err := envelope.LoadPrivateJWK(filepath.Join(cfg.GatewayKeys, "sign.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	subjectKey, err := audit.LoadOrCreateKey(filepath.Join(cfg.GatewayKeys, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(s, audit.Options{Replica: "gw-1", Signer: sign, SubjectKey: subjectKey})
	if err == nil {
		_, err = l.Checkpoint(context.Background())
	}
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	damageCheckpoint(t, dbPath)

	out, code := runBinary(t, dir, nil, "store", "check", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "PROBLEM:") || !strings.Contains(out, "checkpoint") || !strings.Contains(out, dbPath) {
		t.Errorf("store check: exit %d\n%s", code, out)
	}
	// Nothing answers at this ops_listen: audit verify reads the store.
	out, code = runBinary(t, dir, []string{"XBORDER_OPS_LISTEN=" + freeAddr(t)}, "audit", "verify", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "checkpoint") {
		t.Errorf("audit verify: exit %d\n%s", code, out)
	}
	env := []string{"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t)}
	out, code = runBinary(t, dir, env, "serve", "--config", cfgPath)
	if code != 2 || !strings.Contains(out, "the store is damaged") || !strings.Contains(out, "--serve-damaged") ||
		!strings.Contains(out, "checkpoint") {
		t.Errorf("serve on a damaged store: exit %d\n%s", code, out)
	}

	serveProcess(t, dir, env, "--config", cfgPath, "--serve-damaged")
	ops := strings.TrimPrefix(env[1], "XBORDER_OPS_LISTEN=")
	body := get(t, "http://"+ops+"/readyz")
	if !strings.Contains(body, `"store_check":"degraded"`) || !strings.Contains(body, "damaged") {
		t.Errorf("/readyz: %s", body)
	}
	if m := get(t, "http://"+ops+"/metrics"); !strings.Contains(m, "\nxborder_store_damaged 1\n") {
		t.Errorf("no xborder_store_damaged 1 in /metrics")
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	if !bytes.Contains(logs, []byte("store damaged: serving what can still be read")) {
		t.Errorf("no log line says the store is damaged:\n%s", logs)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// startServing runs `xborder serve` and waits until /healthz answers (the
// process serves, ready or not); it returns the operator address.
func startServing(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ops := freeAddr(t)
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XBORDER_POLICY_TIMEOUT="+gatewaytest.TestPolicyTimeout.String(),
		"XBORDER_LISTEN="+freeAddr(t), "XBORDER_OPS_LISTEN="+ops)
	cmd.Env = append(cmd.Env, env...)
	logf, err := os.OpenFile(filepath.Join(dir, "gateway.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		logf.Close()
	})
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
			t.Fatalf("serve ended:\n%s", logs)
		default:
		}
		if resp, err := http.Get("http://" + ops + "/healthz"); err == nil {
			resp.Body.Close()
			return ops
		}
	}
	t.Fatal("serve did not answer /healthz")
	return ""
}

// A disk with less free space than min_free: /readyz says what fails and
// by how much, and the log says it once, not at every probe.
func TestReadinessSaysWhyTheStoreIsNotReady(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway process")
	}
	t.Parallel()
	dir := t.TempDir()
	// No disk here has a pebibyte free.
	cfg, _ := servePKI(t, dir, fmt.Sprintf("min_free: %d\n", int64(1)<<50))
	ops := startServing(t, dir, nil, "--config", cfg)
	var body map[string]any
	for range 3 {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body = nil
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz %d %v", resp.StatusCode, body)
		}
	}
	detail, _ := body["details"].(map[string]any)["store"].(string)
	if !strings.Contains(detail, "MiB free, min_free 1073741824 MiB") {
		t.Errorf("/readyz: %v", body)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	if n := bytes.Count(logs, []byte("not ready: store: ")); n != 1 || !bytes.Contains(logs, []byte("min_free 1073741824 MiB")) {
		t.Errorf("%d log lines say why the store is not ready:\n%s", n, logs)
	}
}

// On Redis, the policy verdict cache goes to the user's cache directory:
// not the working directory (the repository's top in the development
// setup), nor beside a config file that may be mounted read-only.
func TestVerdictCacheOnRedisNotInTheWorkingDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway process")
	}
	t.Parallel()
	root := gatewaytest.RepoRoot()
	dir := t.TempDir()
	for _, name := range []string{"policies"} {
		if err := os.Symlink(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	cache := t.TempDir()
	env := []string{"XBORDER_STORE=" + redistest.Start(t), "XDG_CACHE_HOME=" + cache,
		// TestMain points every other gateway at one shared cache.
		"XBORDER_POLICY_VERDICTS="}
	env = append(env, "XBORDER_LISTEN="+freeAddr(t), "XBORDER_OPS_LISTEN="+freeAddr(t))
	serveProcess(t, dir, env)
	if _, err := os.Stat(filepath.Join(dir, "policy-verdicts")); err == nil {
		t.Error("policy-verdicts made in the working directory")
	}
	if _, err := os.Stat(filepath.Join(cache, "xborder", "policy-verdicts")); err != nil {
		t.Errorf("no verdict cache in the user's cache directory: %v", err)
	}
}

// Restoring data.json to the version in service after an edit was
// refused: nothing is reloaded, and no "new version in service" is logged.
func TestPolicyRestoredToTheVersionInService(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a gateway process")
	}
	t.Parallel()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	if err := os.CopyFS(pol, os.DirFS(filepath.Join(gatewaytest.RepoRoot(), "policies"))); err != nil {
		t.Fatal(err)
	}
	cfg, _ := servePKI(t, dir, "")
	env := []string{"XBORDER_POLICIES=" + pol, "XBORDER_POLICY_WATCH=100ms",
		"XBORDER_LISTEN=" + freeAddr(t), "XBORDER_OPS_LISTEN=" + freeAddr(t)}
	serveProcess(t, dir, env, "--config", cfg)
	data := filepath.Join(pol, "data.json")
	good, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(data, []byte("{not json"), 0o600)
	waitLog(t, dir, "policy reload refused")
	os.WriteFile(data, good, 0o600)
	waitLog(t, dir, "the files are the version in service again", "new version in service")
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	if bytes.Contains(logs, []byte("new version in service")) || bytes.Contains(logs, []byte(`"msg":"policy reloaded"`)) {
		t.Errorf("the version in service was reloaded as new:\n%s", logs)
	}
}

// waitLog waits until dir/gateway.log holds one of the lines.
func waitLog(t *testing.T, dir string, any ...string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
		for _, s := range any {
			if bytes.Contains(logs, []byte(s)) {
				return
			}
		}
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
	t.Fatalf("no %q in the log:\n%s", any, logs)
}

// 200 bytes overwritten anywhere in the store's file, at every half page:
// `store check` exits 0 (bytes no page in use holds) or 1 naming the file
// and the problem — never 2, never a crash with a stack trace.
func TestStoreCheckOverwrittenAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("runs store check once per half page of a store")
	}
	t.Parallel()
	cfgPath, dir := auditSetup(t, "")
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("m%02d", i))
	}
	accepted(t, cfgPath, ids...)
	dbPath := filepath.Join(dir, "data", "xborder.db")
	sound, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for off := 0; off < len(sound); off += 2048 {
		damaged := bytes.Clone(sound)
		copy(damaged[off:], bytes.Repeat([]byte("}"), 200))
		if err := os.WriteFile(dbPath, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runBinary(t, dir, nil, "store", "check", "--config", cfgPath)
		switch {
		case strings.Contains(out, "goroutine "):
			t.Errorf("offset %d: a crash:\n%s", off, out)
		case code == 1 && strings.Contains(out, "PROBLEM: ") && strings.Contains(out, dbPath):
			found++
		case code != 0:
			t.Errorf("offset %d: exit %d\n%s", off, code, out)
		}
	}
	if found == 0 {
		t.Error("no overwrite was found")
	}
	t.Logf("%d of %d overwrites found (the others hit bytes no page in use holds)", found, (len(sound)+2047)/2048)
}
