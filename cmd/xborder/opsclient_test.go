package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
)

// runCLI runs the command tree as main does and returns stdout, stderr and
// the exit code.
func runCLI(args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// gatewayConfig writes a configuration describing env's gateway (its
// operator listener at ops, its store, keys and token).
func gatewayConfig(t *testing.T, env *gatewaytest.Env, ops string) string {
	t.Helper()
	c := env.Config
	p := filepath.Join(t.TempDir(), "xborder.yaml")
	body := fmt.Sprintf("listen: %s\nops_listen: %s\nregistry: %s\ngateway_keys: %s\npolicies: %s\nstore: %s\nops_token_file: %s\n",
		env.Gateway.Addr(), ops, c.Registry, c.GatewayKeys, c.Policies, c.Store, c.OpsTokenFile)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// audit verify, export and subject and deadletters work while the gateway
// runs (through its operator listener, with the token) and once it has
// stopped (in the store file, with --offline), and say on stderr which
// they used.
func TestOperatorCommandsInBothGatewayStates(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	subject := gatewaytest.ChildSubject("CANARYSTATE", "CANARYBOTH")
	m := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
		"subject": subject, "record": map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	if r, err := env.Client("UN-UNICEF").Send(t.Context(), m); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %v", err, r)
	}
	cfg := gatewayConfig(t, env, env.Gateway.OpsAddr())
	export := filepath.Join(t.TempDir(), "audit.jsonl")
	pub := filepath.Join(env.Config.GatewayKeys, pki.SignPubJWK)
	ref := subject["ref"].(string)
	wrong := filepath.Join(t.TempDir(), "wrong.token")
	os.WriteFile(wrong, []byte(strings.Repeat("f", 64)+"\n"), 0o600)
	tokenless := filepath.Join(t.TempDir(), "tokenless.yaml")
	os.WriteFile(tokenless, []byte("registry: r.yaml\ngateway_keys: k\npolicies: p\n"), 0o600)

	type step struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}
	running := []step{
		{"verify, running", []string{"audit", "verify", "--config", cfg}, 0, "audit log verified", "using the running gateway"},
		{"export, running", []string{"audit", "export", "--config", cfg, "--out", export}, 0, "", "using the running gateway"},
		{"verify the export with one JWK", []string{"audit", "verify", "--file", export, "--jwks", pub}, 0, "export verified", ""},
		{"compare the export with the live log, running", []string{"audit", "verify", "--file", export, "--config", cfg}, 0, "consistent with the live log", "using the running gateway"},
		{"subject, running", []string{"audit", "subject", "--config", cfg, "--ref", ref}, 0, "1 entries", "using the running gateway"},
		{"deadletters, running", []string{"deadletters", "--config", cfg}, 0, `"dead_letters": []`, "using the running gateway"},
		{"requeue of an unknown dead letter, running", []string{"deadletters", "--config", cfg, "--requeue", "UN-IOM/3f1c2a90-0000-4000-8000-000000000001"}, 1, "no dead letter", ""},
		{"deadletters with --ops and a wrong token", []string{"deadletters", "--ops", env.OpsURL(), "--ops-token-file", wrong}, 2, "", "ops_token_invalid"},
		{"deadletters with --ops and no token", []string{"deadletters", "--ops", env.OpsURL(), "--config", tokenless}, 2, "", "no operator token is given"},
	}
	for _, s := range running {
		t.Run(s.name, func(t *testing.T) {
			out, errOut, code := runCLI(s.args...)
			if code != s.code || !strings.Contains(out, s.stdout) || !strings.Contains(errOut, s.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, s.code, out, errOut)
			}
		})
	}

	// A gateway that holds the store file but whose operator listener is
	// not where the config says: the error says what to do.
	elsewhere := gatewayConfig(t, env, freeAddr(t))
	_, errOut, code := runCLI("audit", "verify", "--config", elsewhere, "--offline")
	if code != 2 || !strings.Contains(errOut, "is locked by another process") || !strings.Contains(errOut, "--ops URL") {
		t.Errorf("locked store: exit %d: %s", code, errOut)
	}

	env.Stop()
	stopped := []step{
		{"verify, stopped", []string{"audit", "verify", "--config", cfg, "--offline"}, 0, "audit log verified", "reading the store"},
		{"compare the export with the live log, stopped", []string{"audit", "verify", "--file", export, "--config", cfg, "--offline"}, 0, "consistent with the live log", "reading the store"},
		{"subject, stopped", []string{"audit", "subject", "--config", cfg, "--offline", "--ref", ref}, 0, "1 entries", "reading the store"},
		{"deadletters, stopped", []string{"deadletters", "--config", cfg, "--offline"}, 0, `"dead_letters": []`, "reading the store"},
		{"requeue of an unknown dead letter, stopped", []string{"deadletters", "--config", cfg, "--offline", "--requeue", "UN-IOM/3f1c2a90-0000-4000-8000-000000000001"}, 1, "no dead letter", "reading the store"},
	}
	for _, s := range stopped {
		t.Run(s.name, func(t *testing.T) {
			out, errOut, code := runCLI(s.args...)
			if code != s.code || !strings.Contains(out, s.stdout) || !strings.Contains(errOut, s.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, s.code, out, errOut)
			}
		})
	}

	// No gateway and no store file: say so, and do not make an empty one.
	missing := filepath.Join(t.TempDir(), "none.yaml")
	os.WriteFile(missing, []byte("ops_listen: "+freeAddr(t)+"\nstore: bolt:nothing/x.db\nregistry: r.yaml\ngateway_keys: "+env.Config.GatewayKeys+"\npolicies: p\n"), 0o600)
	for _, args := range [][]string{{"deadletters", "--config", missing, "--offline"}, {"audit", "verify", "--config", missing, "--offline"}} {
		_, errOut, code := runCLI(args...)
		if code != 2 || !strings.Contains(errOut, "there is no store file") || !strings.Contains(errOut, "xborder serve") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(missing), "nothing")); err == nil {
		t.Error("a store folder was made")
	}
}
