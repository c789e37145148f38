package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// policy impact --candidate DIR reads nothing outside DIR: a candidate
// whose data.json is a link to a file elsewhere is refused.
func TestPolicyImpactRefusesLinksOut(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cand := copyPolicies(t, dir)
	outside := filepath.Join(dir, "elsewhere.json")
	if err := os.Rename(filepath.Join(cand, "data.json"), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(cand, "data.json")); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	live := filepath.Join(gatewaytest.RepoRoot(), "policies")
	code := run([]string{"policy", "impact", "--candidate", cand, "--policies", live, "--variants", "0"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String()+out.String(), "out of the policy folder") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errb.String())
	}
}
