package gateway_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// nodeClient prepares the Node client written from PROTOCOL.md alone with
// the `jose` library. Its one dependency is shipped in testdata (the npm
// tarball package-lock.json pins, checked against its integrity), so the
// test needs node but neither npm nor the network.
func nodeClient(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is needed for the interoperability test (Debian: apt-get install -y nodejs)")
	}
	src, _ := filepath.Abs(filepath.Join("testdata", "nodeclient"))
	dir := t.TempDir()
	client, err := os.ReadFile(filepath.Join(src, "client.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.mjs"), client, 0o644); err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	raw, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil || json.Unmarshal(raw, &lock) != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	jose := lock.Packages["node_modules/jose"]
	tgz, err := os.ReadFile(filepath.Join(src, "vendor", "jose-"+jose.Version+".tgz"))
	if err != nil {
		t.Fatalf("the shipped jose %s: %v", jose.Version, err)
	}
	sum := sha512.Sum512(tgz)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != jose.Integrity {
		t.Fatalf("vendor/jose-%s.tgz is not the package package-lock.json pins (%s)", jose.Version, got)
	}
	if err := untarPackage(tgz, filepath.Join(dir, "node_modules", "jose")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "client.mjs")
}

// nodeFlags: jose 6 uses the global WebCrypto, which Node 18 (Debian
// bookworm's nodejs) exposes only behind a flag; from Node 19 on it is
// there (and the flag is accepted and ignored).
func nodeFlags(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	var major int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "v%d.", &major); err != nil {
		t.Fatalf("node --version: %q", out)
	}
	if major < 18 {
		t.Fatalf("node %s is too old for jose 6 (18 or later)", strings.TrimSpace(string(out)))
	}
	if major < 19 {
		return []string{"--experimental-global-webcrypto"}
	}
	return nil
}

// untarPackage extracts an npm tarball (files under package/) into dir.
func untarPackage(tgz []byte, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, ok := strings.CutPrefix(h.Name, "package/")
		if !ok || h.Typeflag != tar.TypeReg || !filepath.IsLocal(rel) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
}

func runNode(t *testing.T, script string, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append(append(nodeFlags(t), script), args...)...)
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
	t.Parallel()
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
