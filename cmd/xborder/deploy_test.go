package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

type composeFile struct {
	Services map[string]struct {
		Build   any               `yaml:"build"`
		Image   string            `yaml:"image"`
		Command []string          `yaml:"command"`
		Env     map[string]string `yaml:"environment"`
		Volumes []string          `yaml:"volumes"`
		Ports   []string          `yaml:"ports"`
		Pull    string            `yaml:"pull_policy"`
		Restart string            `yaml:"restart"`
		// Profiles: ha is the Sentinel group (README "Operations").
		Profiles []string `yaml:"profiles"`
		Health   *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// docker-compose.yml: Redis with AOF fsync always, two gateway replicas on
// it with the mounted config, and a push-mode recipient the registry points
// at. This checks the file and the config it mounts without Docker
// (compose_live_test.go runs the stack where it can).
func TestComposeFile(t *testing.T) {
	root := gatewaytest.RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}

	redis, ok := cf.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	cmd := strings.Join(redis.Command, " ")
	if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync always") {
		t.Errorf("redis runs without AOF fsync always: %q", cmd)
	}

	var replicas []string
	replicaNames := map[string]bool{}
	for name, s := range cf.Services {
		if s.Image == "xborder:dev" && s.Pull != "never" {
			t.Errorf("%s: pull_policy %q: xborder:dev is built here, never pulled", name, s.Pull)
		}
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			continue
		}
		replicas = append(replicas, name)
		// A replica that stopped (a crash, a Redis not up yet) comes back.
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
		cfgPath := flagValue(s.Command, "--config")
		var mounted string
		for _, v := range s.Volumes {
			host, ctr, _ := strings.Cut(v, ":")
			if strings.HasPrefix(ctr, cfgPath) {
				mounted = host
			}
		}
		if mounted == "" {
			t.Errorf("%s: config %q is not mounted", name, cfgPath)
			continue
		}
		// Each service with its own environment only: one service's
		// XBORDER_STORE must not carry over to the next.
		for other, os2 := range cf.Services {
			for k := range os2.Env {
				if _, mine := s.Env[k]; !mine && other != name {
					t.Setenv(k, "")
					os.Unsetenv(k)
				}
			}
		}
		for k, v := range s.Env {
			t.Setenv(k, v)
		}
		// As in the container: TestMain's shared verdict cache is not set
		// there (top-level tests that are not parallel run alone).
		if v, ok := os.LookupEnv("XBORDER_POLICY_VERDICTS"); ok {
			os.Unsetenv("XBORDER_POLICY_VERDICTS")
			t.Cleanup(func() { os.Setenv("XBORDER_POLICY_VERDICTS", v) })
		}
		c, err := config.Load(filepath.Join(root, mounted))
		if err != nil {
			t.Errorf("%s: mounted config: %v", name, err)
			continue
		}
		if slices.Contains(s.Profiles, "ha") {
			checkHAStore(t, cf, name, c)
		} else if kind, target := c.StoreKind(); kind != "redis" || !strings.Contains(target, "redis:6379") {
			t.Errorf("%s: store %s %s, want the redis service", name, kind, target)
		}
		if c.Registry != "/pki/registry.yaml" || c.GatewayKeys != "/pki/gateway" || c.DevPKI != "" || c.OpsTokenFile != "/pki/ops.token" {
			t.Errorf("%s: config %+v", name, c)
		}
		// A fixed replica name: a re-created container continues its chain.
		if c.Replica == "" || replicaNames[c.Replica] {
			t.Errorf("%s: replica name %q (empty or shared)", name, c.Replica)
		}
		replicaNames[c.Replica] = true
		// The verdict cache is not beside the config, which is mounted
		// read-only, but in the image's writable /data.
		if vd := c.VerdictDir(); !strings.HasPrefix(vd, "/data/") {
			t.Errorf("%s: policy verdicts in %q, not under /data", name, vd)
		}
		// The operator listener is published on the host's loopback only.
		_, opsPort, _ := net.SplitHostPort(c.OpsListen)
		for _, p := range s.Ports {
			if strings.HasSuffix(p, ":"+opsPort) && !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: operator port published beyond the loopback: %q", name, p)
			}
		}
		// Health: the image's own binary asks /readyz on the operator port.
		if s.Health == nil || len(s.Health.Test) < 5 || s.Health.Test[1] != "/usr/local/bin/xborder" || s.Health.Test[2] != "health" ||
			flagValue(s.Health.Test, "--ops") != "http://127.0.0.1:"+opsPort {
			t.Errorf("%s: healthcheck %+v", name, s.Health)
		}
	}
	if len(replicas) < 2 {
		t.Errorf("want two gateway replicas, found %v", replicas)
	}

	pki, recipient := cf.Services["pki"], cf.Services["recipient"]
	push := flagValue(pki.Command, "--push")
	id, pushURL, _ := strings.Cut(push, "=")
	u, err := url.Parse(pushURL)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("pki --push %q", push)
	}
	if recipient.Command[0] != "receive" || flagValue(recipient.Command, "--as") != id {
		t.Errorf("recipient %v does not receive for %s", recipient.Command, id)
	}
	_, port, _ := net.SplitHostPort(flagValue(recipient.Command, "--listen"))
	if u.Hostname() != "recipient" || u.Port() != port {
		t.Errorf("push URL %s does not reach the recipient service on port %s", pushURL, port)
	}
	hosts := strings.Split(flagValue(pki.Command, "--gateway-hosts"), ",")
	for _, r := range replicas {
		if !slices.Contains(hosts, r) {
			t.Errorf("gateway certificate lacks the replica name %s", r)
		}
	}

	// The image the services use is built from a Dockerfile that exists and
	// builds this command.
	docker, err := os.ReadFile(filepath.Join(root, "cmd", "xborder", "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docker), "go build") || !strings.Contains(string(docker), "./cmd/xborder") {
		t.Error("Dockerfile does not build ./cmd/xborder")
	}
	// The compose pki command is one the CLI accepts.
	dir := t.TempDir()
	args := append([]string{}, pki.Command...)
	args[slices.Index(args, "/pki")] = filepath.Join(dir, "pki")
	var out strings.Builder
	if code := run(args, &out, &out); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, out.String())
	}
	reg, _ := os.ReadFile(filepath.Join(dir, "pki", "registry.yaml"))
	if !strings.Contains(string(reg), pushURL) {
		t.Errorf("registry does not push to %s", pushURL)
	}
	if st, err := os.Stat(filepath.Join(dir, "pki", "ops.token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the pki service makes no operator token (0600): %v", err)
	}
	// The healthcheck's command line is one the CLI accepts.
	env := gatewaytest.Start(t)
	composeWalkthroughPushes(t, root, id, env)
	for _, name := range replicas {
		args := append([]string{}, cf.Services[name].Health.Test[2:]...)
		args[slices.Index(args, "--ops")+1] = env.OpsURL()
		if code := run(args, &out, &out); code != 0 {
			t.Errorf("%s healthcheck %v: exit %d: %s", name, args, code, out.String())
		}
	}
}

// .dockerignore lets only the sources into the build context: development
// keys, local state and binaries stay out.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	if len(rules) == 0 || rules[0] != "*" {
		t.Fatalf("not an allow-list (first rule %v)", rules)
	}
	allowed := map[string]bool{}
	for _, r := range rules[1:] {
		if a, ok := strings.CutPrefix(r, "!"); ok {
			allowed[strings.Trim(a, "/")] = true
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd", "gateway", "adapters", "policies"} {
		if !allowed[need] {
			t.Errorf("%s is not let in", need)
		}
	}
	for a := range allowed {
		if strings.HasPrefix(a, "certs") || strings.HasPrefix(a, "data") || strings.HasPrefix(a, ".git") {
			t.Errorf("%s is let in", a)
		}
	}
}

// composeWalkthroughPushes checks that the README's compose walkthrough
// sends something to the push recipient (id) before it shows the
// recipient's log, and that this send is accepted by a gateway of the demo
// federation (env), as the stack's would.
func composeWalkthroughPushes(t *testing.T, root, id string, env *gatewaytest.Env) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := strings.ReplaceAll(shellBlock(t, string(readme), "## Running several replicas", 0), "\\\n", " ")
	logs := strings.Index(block, "logs recipient")
	var send []string
	for _, l := range strings.Split(block[:max(logs, 0)], "\n") {
		f := strings.Fields(strings.SplitN(l, "#", 2)[0])
		if len(f) > 1 && f[1] == "send" && flagValue(f, "--to") == id {
			send = f[1:]
		}
	}
	if logs < 0 || send == nil {
		t.Fatalf("the compose walkthrough sends nothing to %s before `logs recipient`:\n%s", id, block)
	}
	send[slices.Index(send, "--pki")+1] = env.PKI
	send[slices.Index(send, "--gateway")+1] = env.URL()
	send[len(send)-1] = filepath.Join(root, send[len(send)-1])
	var out strings.Builder
	if code := run(send, &out, &out); code != 0 || !strings.Contains(out.String(), "accepted") {
		t.Errorf("%v: exit %d\n%s", send, code, out.String())
	}
}

// checkHAStore: a gateway of the ha profile names the profile's three
// Sentinels, which monitor the profile's primary; every data node of the
// profile is durable and the replicas follow that primary.
func checkHAStore(t *testing.T, cf composeFile, name string, c config.Config) {
	t.Helper()
	_, target := c.StoreKind()
	rest, ok := strings.CutPrefix(target, "redis-sentinel://")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || c.RedisAcks() != 1 {
		t.Errorf("%s: store %q (acks %d), want redis-sentinel://SENTINELS/MASTER/DB waiting for one replica", name, target, c.RedisAcks())
		return
	}
	// Its journal is in /data, a volume of its own that outlives the
	// container (the config is mounted read-only).
	if jp := c.JournalPath(); !strings.HasPrefix(jp, "/data/") || !slices.Contains(cf.Services[name].Volumes, name+":/data") {
		t.Errorf("%s: journal %q, volumes %v; want it under /data, a volume named after the gateway", name, jp, cf.Services[name].Volumes)
	}
	sentinels := strings.Split(parts[0], ",")
	if len(sentinels) != 3 {
		t.Errorf("%s: %d Sentinels, want 3", name, len(sentinels))
	}
	for _, a := range sentinels {
		host, _, _ := strings.Cut(a, ":")
		s, ok := cf.Services[host]
		script := strings.Join(s.Command, " ")
		if !ok || !slices.Contains(s.Profiles, "ha") || !strings.Contains(script, "--sentinel") ||
			!strings.Contains(script, "sentinel monitor "+parts[1]+" redis-primary 6379 2") ||
			!strings.Contains(script, "down-after-milliseconds "+parts[1]+" 2000") {
			t.Errorf("%s: %s is not a Sentinel of the ha profile monitoring %s at redis-primary: %q", name, host, parts[1], script)
		}
	}
	for _, n := range []string{"redis-primary", "redis-replica1", "redis-replica2"} {
		cmd := strings.Join(cf.Services[n].Command, " ")
		if !strings.Contains(cmd, "--appendonly yes") || !strings.Contains(cmd, "--appendfsync always") ||
			!strings.Contains(cmd, "--min-replicas-to-write 1") {
			t.Errorf("%s: not durable or takes writes no replica holds: %q", n, cmd)
		}
		if n != "redis-primary" && !strings.Contains(cmd, "--replicaof redis-primary 6379") {
			t.Errorf("%s: not a replica of redis-primary: %q", n, cmd)
		}
	}
}
