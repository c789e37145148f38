package edge_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/edge"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
)

// The example outbound policy shipped for the demo federation.
var exampleOutbound = filepath.Join(gatewaytest.RepoRoot(), "cmd", "xborder", "examples", "outbound")

// An outbound denial answers 403 policy_denied with the participant's rule
// ids at POST time, is audited, and nothing is queued or sent; an allowed
// message is queued. No hub runs: nothing could have been sent.
func TestOutboundPolicy(t *testing.T) {
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	r := startEdge(t, pkiDir, "https://"+freeAddr(t), "UN-UNICEF", "local",
		func(c *config.Edge) {
			c.OutboundPolicies = exampleOutbound
			c.OpsTokenFile = filepath.Join(pkiDir, pki.OpsTokenFile)
		}, edge.Options{})

	referral := map[string]any{
		"to": "KZ-MJ", "type": "referral", "purpose": "rehabilitation-referral",
		"subject": gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"), "record": map[string]any{"service": "psychosocial"},
	}
	a := call(t, http.MethodPost, r.url("/v1/outbox"), referral, nil)
	doc := a.json(t)
	if a.Status != http.StatusForbidden || doc["code"] != "policy_denied" || !strings.Contains(string(a.Body), `"rule":"OUT2"`) || doc["decision_id"] == "" {
		t.Fatalf("referral without consent: %d %s", a.Status, a.Body)
	}
	referral["consent"] = map[string]any{"id": "C-2026-7"}
	if a := call(t, http.MethodPost, r.url("/v1/outbox"), referral, nil); a.Status != http.StatusAccepted {
		t.Fatalf("referral with consent: %d %s", a.Status, a.Body)
	}
	m := string(call(t, http.MethodGet, r.ops("/metrics"), nil, nil).Body)
	if !strings.Contains(m, "xborder_edge_outbound_denied_total 1") || !strings.Contains(m, "xborder_edge_outbox_depth 1") {
		t.Errorf("metrics: %s", m)
	}
	// The evidence, exported with the operator token and checked offline
	// with the participant's public key only.
	if a := call(t, http.MethodGet, r.ops("/audit/export"), nil, nil); a.Status != http.StatusUnauthorized {
		t.Errorf("export without the operator token: %d", a.Status)
	}
	tok, err := pki.ReadOpsToken(filepath.Join(pkiDir, pki.OpsTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	exp := call(t, http.MethodGet, r.ops("/audit/export"), nil, map[string]string{"Authorization": "Bearer " + string(tok)})
	pub, err := envelope.LoadPublicJWK(filepath.Join(pkiDir, "UN-UNICEF", "sign.pub.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := audit.VerifyExport(bytes.NewReader(exp.Body), audit.KeyFunc(pub)); exp.Status != http.StatusOK || err != nil || len(sum.Replicas) != 1 || sum.Replicas[0].Count != 2 {
		t.Errorf("export: %d %v %+v\n%s", exp.Status, err, sum, exp.Body)
	}
	r.stop()
	if kinds := auditKinds(t, pkiDir, r.cfg.StorePath(), "UN-UNICEF"); kinds != "denied,queued" {
		t.Errorf("audit kinds %s, want denied,queued", kinds)
	}
	assertNoCanary(t, "UN-UNICEF", r.logs.String(), "CANARYPRIMARY", "CANARYSECOND")
}

// An outbound policy whose own tests fail does not serve: the edge does
// not start.
func TestOutboundPolicyTestsGateStart(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"outbound.rego", "outbound_test.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join(exampleOutbound, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "data.json" {
			b = []byte(strings.Replace(string(b), `"prosecutor-desk": ["prosecution-evidence"]`, `"prosecutor-desk": []`, 1))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	cfg := config.Edge{Participant: "KZ-MJ", ParticipantKeys: filepath.Join(pkiDir, "KZ-MJ"), Hub: "https://127.0.0.1:1",
		Registry: filepath.Join(pkiDir, pki.RegistryFile), Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0",
		Store: "bolt:" + filepath.Join(t.TempDir(), "e.db"), Deliver: "local", OutboundPolicies: dir}
	_, err := edge.New(t.Context(), cfg, nil, edge.Options{})
	if err == nil || !strings.Contains(err.Error(), "tests failed") {
		t.Fatalf("edge with failing policy tests: %v", err)
	}
}

// An edit of the outbound policy serves only once its tests pass: a
// breaking edit is refused and audited, the last good version keeps
// deciding; a good edit is audited and decides from then on.
func TestOutboundPolicyReload(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{}
	for _, f := range []string{"outbound.rego", "outbound_test.rego", "data.json"} {
		b, err := os.ReadFile(filepath.Join(exampleOutbound, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = b
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	editData := func(from, to string) {
		t.Helper()
		b := strings.Replace(string(files["data.json"]), from, to, 1)
		if b == string(files["data.json"]) {
			t.Fatalf("no %q in data.json", from)
		}
		if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	r := startEdge(t, pkiDir, "https://"+freeAddr(t), "KZ-MJ", "local",
		func(c *config.Edge) { c.OutboundPolicies = dir }, edge.Options{PolicyWatch: 50 * time.Millisecond})
	evidence := map[string]any{
		"to": "UZ-MVD", "type": "referral", "purpose": "prosecution-evidence", "consent": map[string]any{"id": "C-1"},
		"subject": map[string]any{"ref": "S-1"}, "record": map[string]any{"case_number": "KZ-2026-000042"},
	}
	if a := call(t, http.MethodPost, r.url("/v1/outbox"), evidence, nil); a.Status != http.StatusForbidden || !strings.Contains(string(a.Body), "OUT1") {
		t.Fatalf("six-digit case number before the edit: %d %s", a.Status, a.Body)
	}

	// A breaking edit: the example's own tests fail, it does not serve.
	editData(`"local": ["identity-verification", `, `"local": [`)
	waitFor(t, 30*time.Second, "the refusal", func() bool { return strings.Contains(r.logs.String(), "outbound policy edit refused") })
	verify := map[string]any{"to": "UN-UNICEF", "type": "identity.verification.request", "purpose": "identity-verification",
		"subject": map[string]any{"ref": "S-1"}}
	if a := call(t, http.MethodPost, r.url("/v1/outbox"), verify, nil); a.Status != http.StatusAccepted {
		t.Fatalf("the last good policy no longer serves: %d %s", a.Status, a.Body)
	}

	// A good edit: six-digit case numbers from now on.
	editData(`[0-9]{5}$`, `[0-9]{5,6}$`)
	waitFor(t, 30*time.Second, "the reload", func() bool { return strings.Contains(r.logs.String(), "outbound policy reloaded") })
	if a := call(t, http.MethodPost, r.url("/v1/outbox"), evidence, nil); a.Status != http.StatusAccepted {
		t.Fatalf("six-digit case number after the edit: %d %s", a.Status, a.Body)
	}
	r.stop()
	if kinds := auditKinds(t, pkiDir, r.cfg.StorePath(), "KZ-MJ"); kinds != "denied,policy_refused,queued,policy_changed,queued" {
		t.Errorf("audit kinds %s", kinds)
	}
}

// With local_token_file, every call needs a bearer token; its name is the
// caller the outbound policy sees, and Idempotency-Keys are each caller's.
func TestLocalTokens(t *testing.T) {
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	caseTok, deskTok := strings.Repeat("c", 40), strings.Repeat("d", 40)
	tokens := filepath.Join(t.TempDir(), "local.tokens")
	if err := os.WriteFile(tokens, []byte("# local systems\ncase-system "+caseTok+"\nprosecutor-desk "+deskTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startEdge(t, pkiDir, "https://"+freeAddr(t), "KZ-MJ", "local", func(c *config.Edge) {
		c.LocalTokenFile = tokens
		c.OutboundPolicies = exampleOutbound
	}, edge.Options{})
	as := func(tok, key string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + tok}
		if key != "" {
			h["Idempotency-Key"] = key
		}
		return h
	}
	evidence := func(n string) map[string]any {
		return map[string]any{"to": "UZ-MVD", "type": "referral", "purpose": "prosecution-evidence", "consent": map[string]any{"id": "C-1"},
			"subject": map[string]any{"ref": "S-1"}, "record": map[string]any{"case_number": "KZ-2026-0004" + n}}
	}
	for _, c := range []struct {
		name string
		hdr  map[string]string
	}{{"no token", nil}, {"unknown token", as(strings.Repeat("x", 40), "")}} {
		a := call(t, http.MethodGet, r.url("/v1/inbox"), nil, c.hdr)
		if a.Status != http.StatusUnauthorized || a.json(t)["code"] != "unauthorized" || a.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", c.name, a.Status, a.Body)
		}
	}
	// The case system may not send prosecution evidence (OUT3); the desk may.
	if a := call(t, http.MethodPost, r.url("/v1/outbox"), evidence("1"), as(caseTok, "k1")); a.Status != http.StatusForbidden || !strings.Contains(string(a.Body), "OUT3") {
		t.Errorf("case system: %d %s", a.Status, a.Body)
	}
	a := call(t, http.MethodPost, r.url("/v1/outbox"), evidence("1"), as(deskTok, "k1"))
	if a.Status != http.StatusAccepted {
		t.Fatalf("desk: %d %s", a.Status, a.Body)
	}
	// The same key from another caller is that caller's own.
	verify := map[string]any{"to": "UN-UNICEF", "type": "identity.verification.request", "purpose": "identity-verification", "subject": map[string]any{"ref": "S-1"}}
	b := call(t, http.MethodPost, r.url("/v1/outbox"), verify, as(caseTok, "k1"))
	if b.Status != http.StatusAccepted || b.json(t)["id"] == a.json(t)["id"] {
		t.Errorf("another caller's key: %d %s", b.Status, b.Body)
	}
	if c := call(t, http.MethodPost, r.url("/v1/outbox"), evidence("2"), as(deskTok, "k1")); c.Status != http.StatusConflict {
		t.Errorf("same caller, same key, other body: %d %s", c.Status, c.Body)
	}
	if c := call(t, http.MethodPost, r.url("/v1/outbox"), evidence("1"), as(deskTok, "k1")); c.Status != http.StatusOK || c.json(t)["id"] != a.json(t)["id"] {
		t.Errorf("same caller, same key, same body: %d %s", c.Status, c.Body)
	}
}
