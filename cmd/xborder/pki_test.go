package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pki init on a folder that already holds a PKI leaves it alone and says
// so (and what --force does); asked for participants it did not make, it
// does not claim it made them.
func TestPKIInitExistingFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if _, errOut, code := runBin(t, dir, nil, "pki", "init", "--dir", pkiDir, "--participants", "UN-UNICEF"); code != 0 {
		t.Fatalf("pki init: %s", errOut)
	}
	ca, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))

	out, errOut, code := runBin(t, dir, nil, "pki", "init", "--dir", pkiDir)
	if code != 0 || strings.Contains(out+errOut, "development PKI for") || !strings.Contains(out+errOut, "left it as it is") ||
		!strings.Contains(out+errOut, "--force") {
		t.Errorf("again: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	out, errOut, code = runBin(t, dir, nil, "pki", "init", "--dir", pkiDir, "--participants", "KZ-MVD")
	if code != 1 || strings.Contains(out+errOut, "development PKI for") || !strings.Contains(out+errOut, "KZ-MVD") ||
		!strings.Contains(out+errOut, "--force") {
		t.Errorf("--participants on an existing folder: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "KZ-MVD")); err == nil {
		t.Error("KZ-MVD was made")
	}
	if now, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt")); !bytes.Equal(now, ca) {
		t.Error("the CA was replaced without --force")
	}
	out, errOut, code = runBin(t, dir, nil, "pki", "init", "--dir", pkiDir, "--participants", "KZ-MVD", "--force")
	if now, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt")); code != 0 || bytes.Equal(now, ca) || !strings.Contains(out, "development PKI for 1 participants") {
		t.Errorf("--force: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
