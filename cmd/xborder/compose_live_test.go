package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

// composeTool is `docker compose` (v2) or else `docker-compose` (v1), or
// nil when neither runs.
func composeTool() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	return nil
}

// The base images docker-compose.yml and its Dockerfile build from.
var composeBaseImages = []string{"golang:1.26-bookworm", "debian:bookworm-slim", "redis:7-bookworm"}

// TestComposeStackLive runs docker-compose.yml as the README does, on free
// host ports, where a Docker engine, a compose tool and the base images are
// available (it never pulls): it sends through replica 1, reads through
// replica 2, checks that a push reached the sample recipient (whose log
// carries ids only), and that the operator listener answers on the loopback
// with the token taken out of the PKI volume as the README shows.
func TestComposeStackLive(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds an image and runs the compose stack")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("skipped: no Docker engine answers (docker info failed); install one (Debian: apt-get install -y docker.io docker-compose) to run the compose stack")
	}
	tool := composeTool()
	if tool == nil {
		t.Skip("skipped: neither `docker compose` nor `docker-compose` runs")
	}
	for _, img := range composeBaseImages {
		if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
			t.Skipf("skipped: base image %s is not present and this test does not pull (docker pull %s where a registry is reachable)", img, img)
		}
	}

	root := gatewaytest.RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The same file on free host ports (the usual ones may be taken by a
	// gateway running here).
	ports := map[string]string{}
	spec := string(raw)
	for _, m := range []struct{ host, published string }{
		{"8443", `"8443:8443"`}, {"8543", `"8543:8443"`},
		{"9090", `"127.0.0.1:9090:9090"`}, {"9190", `"127.0.0.1:9190:9090"`},
		{"8600", `"127.0.0.1:8600:8600"`}, {"8601", `"127.0.0.1:8601:8601"`},
		{"8700", `"127.0.0.1:8700:8700"`}, {"8701", `"127.0.0.1:8701:8701"`},
	} {
		if !strings.Contains(spec, m.published) {
			t.Fatalf("docker-compose.yml no longer publishes %s", m.published)
		}
		_, free, _ := net.SplitHostPort(freeAddr(t))
		ports[m.host] = free
		spec = strings.Replace(spec, m.published, strings.Replace(m.published, m.host+":", free+":", 1), 1)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	project := "xbordertest" + hex.EncodeToString(suffix)
	compose := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		full := append(append(append([]string{}, tool[1:]...), "-p", project, "-f", file, "--project-directory", root), args...)
		cmd := exec.CommandContext(ctx, tool[0], full...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := compose(time.Minute, "logs", "--no-color")
			t.Logf("compose logs:\n%s", logs)
		}
		_, _ = compose(3*time.Minute, "down", "-v", "--remove-orphans")
	})
	if out, err := compose(15*time.Minute, "up", "--build", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	container := func(service string) string {
		args := []string{"ps", "-q", service}
		if len(tool) == 2 {
			args = []string{"ps", "-aq", service} // v2 lists stopped containers with -a only
		}
		out, err := compose(time.Minute, args...)
		if err != nil {
			t.Fatalf("compose ps %s: %v %s", service, err, out)
		}
		return strings.TrimSpace(out)
	}
	// Both replicas become healthy (xborder health on /readyz).
	deadline := time.Now().Add(5 * time.Minute)
	for _, svc := range []string{"gateway1", "gateway2"} {
		id := container(svc)
		for {
			out, _ := exec.Command("docker", "inspect", "-f", "{{.State.Health.Status}}", id).Output()
			if strings.TrimSpace(string(out)) == "healthy" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %s after 5 minutes", svc, out)
			}
			time.Sleep(2 * time.Second)
		}
	}

	// The README's way to the PKI: copied out of the volume, as yourself.
	pkiDir := filepath.Join(dir, "pki")
	if out, err := exec.Command("docker", "cp", container("pki")+":/pki", pkiDir).CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v %s", err, out)
	}
	gw1, gw2 := "https://localhost:"+ports["8443"], "https://localhost:"+ports["8543"]
	ops1 := "http://127.0.0.1:" + ports["9090"]

	// Send through replica 1, read through replica 2.
	example := filepath.Join(root, "cmd", "xborder", "examples", "verify-request.json")
	out, errOut, code := runCLI("send", "--pki", pkiDir, "--gateway", gw1, "--as", "UN-UNICEF", "--to", "KZ-MJ",
		"--type", "identity.verification.request", "--purpose", "identity-verification", "-o", "id", example)
	if code != 0 {
		t.Fatalf("send through replica 1: %d %s %s", code, out, errOut)
	}
	id := strings.TrimSpace(out)
	deadline = time.Now().Add(time.Minute)
	for {
		out, errOut, code = runCLI("inbox", "--pki", pkiDir, "--gateway", gw2, "--as", "KZ-MJ", "--ack")
		if code == 0 && strings.Contains(out, id) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 2 never delivered %s: %d %s %s", id, code, out, errOut)
		}
		time.Sleep(time.Second)
	}

	// A push reaches the sample recipient, whose log has ids, not content.
	me, err := client.LoadIdentity(pkiDir, "KZ-MTSZN")
	if err != nil {
		t.Fatal(err)
	}
	ref := adultReferral(uuid.NewString())
	r, err := client.New(gw1, me).Send(t.Context(), ref)
	if err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("referral: %v %v", err, r)
	}
	refID := ref["id"].(string)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		logs, _ := exec.Command("docker", "logs", container("recipient")).CombinedOutput()
		if bytes.Contains(logs, []byte(refID)) {
			if bytes.Contains(logs, []byte("CANARY")) {
				t.Errorf("the recipient logged personal data:\n%s", logs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the push of %s did not reach the recipient:\n%s", refID, logs)
		}
		time.Sleep(time.Second)
	}

	// The operator listener on the host's loopback: open health, token for
	// the rest.
	if resp, err := http.Get(ops1 + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("readyz: %v %v", err, resp)
	}
	if resp, err := http.Post(ops1+"/deadletters/UN-IOM/x/requeue", "", nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("requeue without the token: %v %v", err, resp)
	}
	out, errOut, code = runCLI("deadletters", "--ops", ops1, "--ops-token-file", filepath.Join(pkiDir, "ops.token"))
	if code != 0 || !strings.Contains(out, "dead_letters") || !strings.Contains(errOut, "using the running gateway") {
		t.Errorf("deadletters: %d %s %s", code, out, errOut)
	}
	out, errOut, code = runCLI("audit", "verify", "--ops", ops1, "--ops-token-file", filepath.Join(pkiDir, "ops.token"), "--jwks", filepath.Join(pkiDir, "gateway", "sign.pub.jwk"))
	if code != 0 || !strings.Contains(out, "gateway1:") || !strings.Contains(out, "gateway2:") {
		t.Errorf("audit verify of both replicas' chains: %d %s %s", code, out, errOut)
	}
	t.Logf("compose stack (%s): sent %s via replica 1, read via replica 2; pushed %s to the recipient", strings.Join(tool, " "), id, refID)
}
