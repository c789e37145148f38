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
// at. Docker cannot run here; this checks the file and the config it mounts.
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
	for name, s := range cf.Services {
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			continue
		}
		replicas = append(replicas, name)
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
		for k, v := range s.Env {
			t.Setenv(k, v)
		}
		c, err := config.Load(filepath.Join(root, mounted))
		if err != nil {
			t.Errorf("%s: mounted config: %v", name, err)
			continue
		}
		if kind, target := c.StoreKind(); kind != "redis" || !strings.Contains(target, "redis:6379") {
			t.Errorf("%s: store %s %s, want the redis service", name, kind, target)
		}
		if c.Registry != "/pki/registry.yaml" || c.GatewayKeys != "/pki/gateway" || c.DevPKI != "" {
			t.Errorf("%s: config %+v", name, c)
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
}
