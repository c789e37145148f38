package pki_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/pki"
)

func TestOpsToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", pki.OpsTokenFile)
	made, err := pki.EnsureOpsToken(path)
	if err != nil || !made {
		t.Fatalf("first: %v %v", made, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", st.Mode(), err)
	}
	tok, err := pki.ReadOpsToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("read: %q %v", tok, err)
	}
	if made, err := pki.EnsureOpsToken(path); err != nil || made {
		t.Fatalf("second: %v %v", made, err)
	}
	if again, _ := pki.ReadOpsToken(path); string(again) != string(tok) {
		t.Error("an existing token was replaced")
	}
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("secret\n"), 0o600)
	if _, err := pki.ReadOpsToken(short); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("a short token: %v", err)
	}
	twoLines := filepath.Join(t.TempDir(), "json")
	os.WriteFile(twoLines, []byte("{\n  \"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"abc\"\n}\n"), 0o600)
	if _, err := pki.ReadOpsToken(twoLines); err == nil || !strings.Contains(err.Error(), "printable ASCII") {
		t.Errorf("a JSON file as a token: %v", err)
	}
}
