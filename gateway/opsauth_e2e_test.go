package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
)

// opsCall calls the operator listener with an Authorization header (none
// when auth is "") and returns the status, the body and the problem code.
func opsCall(t *testing.T, env *gatewaytest.Env, method, path, auth, body string) (int, []byte, string) {
	t.Helper()
	req, err := http.NewRequest(method, env.OpsURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p struct {
		Code string `json:"code"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, &p)
	}
	return resp.StatusCode, b, p.Code
}

// The operator listener through its real socket: health, readiness and
// metrics are open; the dead-letter queue, its requeue, the audit export
// and the subject report need the operator token, and say why (problem+json
// with a stable code) when it is missing or wrong.
func TestOperatorListenerAuth(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	subject := gatewaytest.ChildSubject("CANARYOPS", "CANARYTOKEN")
	if r, _ := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", subject)); r.Status != http.StatusAccepted {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	bearer := "Bearer " + env.OpsToken()
	requeue := "/deadletters/UN-IOM/3f1c2a90-0000-4000-8000-000000000001/requeue"
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		code                           string
	}{
		{"healthz is open", "GET", "/healthz", "", "", 200, ""},
		{"readyz is open", "GET", "/readyz", "", "", 200, ""},
		{"metrics are open", "GET", "/metrics", "", "", 200, ""},
		{"dead letters without a token", "GET", "/deadletters", "", "", 401, "ops_token_missing"},
		{"dead letters with a wrong token", "GET", "/deadletters", "Bearer " + strings.Repeat("0", 64), "", 401, "ops_token_invalid"},
		{"dead letters with a Basic header", "GET", "/deadletters", "Basic b3BzOm9wcw==", "", 401, "ops_token_missing"},
		{"dead letters with the token", "GET", "/deadletters", bearer, "", 200, ""},
		{"requeue without a token", "POST", requeue, "", "", 401, "ops_token_missing"},
		{"requeue with a wrong token", "POST", requeue, "Bearer nope", "", 401, "ops_token_invalid"},
		{"requeue with the token (no such dead letter)", "POST", requeue, bearer, "", 404, "not_found"},
		{"audit export without a token", "GET", "/audit/export", "", "", 401, "ops_token_missing"},
		{"audit subject without a token", "POST", "/audit/subject", "", `{"ref":"x"}`, 401, "ops_token_missing"},
		{"audit subject with the token", "POST", "/audit/subject", bearer, `{"ref":"` + subject["ref"].(string) + `"}`, 200, ""},
		{"audit subject without a ref", "POST", "/audit/subject", bearer, `{}`, 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, code := opsCall(t, env, tc.method, tc.path, tc.auth, tc.body)
			if status != tc.status || code != tc.code {
				t.Fatalf("%d %q, want %d %q: %s", status, code, tc.status, tc.code, body)
			}
		})
	}

	// The export is the live log, ending with a checkpoint signed now, and
	// verifies with the gateway's public keys.
	status, body, _ := opsCall(t, env, "GET", "/audit/export", bearer, "")
	if status != 200 {
		t.Fatalf("export: %d %s", status, body)
	}
	keys, err := envelope.ParseJWKS(env.Gateway.Keys.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.VerifyExport(bytes.NewReader(body), audit.KeyFunc(keys...))
	if err != nil || len(s.Replicas) != 1 || s.Replicas[0].Count == 0 {
		t.Fatalf("export verifies: %v %+v", err, s)
	}
	assertNoCanary(t, env.Logs.String()+string(body), "CANARYOPS", "CANARYTOKEN")
}

// A gateway without ops_token_file refuses every operator endpoint but
// health, readiness and metrics, whatever token is sent (fail closed).
func TestOperatorListenerWithoutToken(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) { c.OpsTokenFile = "" })
	for _, auth := range []string{"", "Bearer " + strings.Repeat("a", 64)} {
		if status, body, code := opsCall(t, env, "POST", "/deadletters/UN-IOM/x/requeue", auth, ""); status != 403 || code != "ops_token_not_configured" {
			t.Errorf("requeue (auth %q): %d %s", auth, status, body)
		}
	}
	if status, _, _ := opsCall(t, env, "GET", "/readyz", "", ""); status != 200 {
		t.Errorf("readyz: %d", status)
	}
	if !strings.Contains(env.Logs.String(), "no ops_token_file") {
		t.Error("the missing token is not logged at start")
	}
}

// The development setup makes an operator token beside a PKI made by an
// earlier version (which had none), and says so.
func TestDevelopmentSetupMakesTheOperatorToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if err := pki.Init(pki.Options{Dir: pkiDir}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(pkiDir, pki.OpsTokenFile)
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.OpsListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DevPKI, cfg.OpsTokenFile = pkiDir, tokenFile
	cfg.Registry, cfg.GatewayKeys = filepath.Join(pkiDir, "registry.yaml"), filepath.Join(pkiDir, "gateway")
	cfg.Policies = filepath.Join(gatewaytest.RepoRoot(), "policies")
	cfg.Store = "bolt:" + filepath.Join(dir, "data", "xborder.db")
	cfg.PolicyWatch, cfg.PolicyTimeout = 0, gatewaytest.TestPolicyTimeout
	env := gatewaytest.StartWith(t, pkiDir, cfg)
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token: %v %v", st, err)
	}
	logs := env.Logs.String()
	if !strings.Contains(logs, "operator token made") || !strings.Contains(logs, "store file created") || strings.Contains(logs, "development PKI made") {
		t.Errorf("first start of this store on an earlier PKI:\n%s", logs)
	}
	if status, body, _ := opsCall(t, env, "GET", "/deadletters", "Bearer "+env.OpsToken(), ""); status != 200 {
		t.Errorf("dead letters with the new token: %d %s", status, body)
	}
}
