package gateway_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// nodeClient prepares the Node client written from PROTOCOL.md alone with
// the `jose` library, installing its one dependency when it is missing.
func nodeClient(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is needed for the interoperability test (Debian: apt-get install -y nodejs npm)")
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "nodeclient"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	return filepath.Join(dir, "client.mjs")
}

func runNode(t *testing.T, script string, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, out)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("node output %s: %v", out, err)
	}
	return v
}

// A client written from PROTOCOL.md alone with Node's jose gets 202 and a
// verifiable receipt, and the recipient, also in Node, decrypts and
// verifies its delivery.
func TestNodeJoseClient(t *testing.T) {
	script := nodeClient(t)
	env := gatewaytest.Start(t)
	msg := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("CANARYNODE", "CANARYJOSE"))
	file := filepath.Join(t.TempDir(), "message.json")
	b, _ := json.Marshal(msg)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	sent := runNode(t, script, "send", env.URL(), env.PKI, "UN-UNICEF", file)
	if sent["status"] != float64(202) {
		t.Fatalf("node send: %v", sent)
	}
	answer := sent["answer"].(map[string]any)
	receipt := sent["receipt"].(map[string]any)
	if sent["receipt_typ"] != "xborder-receipt+jws" || sent["receipt_digest_ok"] != true ||
		receipt["id"] != msg["id"] || receipt["decision_id"] != answer["decision_id"] {
		t.Errorf("receipt as Node sees it: %v", sent)
	}

	got := runNode(t, script, "inbox", env.URL(), env.PKI, "KZ-MJ")
	ds, _ := got["deliveries"].([]any)
	if len(ds) != 1 {
		t.Fatalf("node inbox: %v", got)
	}
	d := ds[0].(map[string]any)
	m := d["message"].(map[string]any)
	prov := d["provenance"].(map[string]any)
	if d["typ"] != "xborder-delivery+jws" || d["cty"] != "xborder+jws" || d["ack"] != float64(204) ||
		m["id"] != msg["id"] || prov["decision_id"] != answer["decision_id"] {
		t.Errorf("delivery as Node sees it: %v", d)
	}
	assertNoCanary(t, env.Logs.String(), "CANARYNODE", "CANARYJOSE")
}
