package policies_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

// dir is this package's folder: the policies/ folder of the repository.
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// TestScenarioLayout keeps each scenario in a folder of its own, so that
// OPA's loader (which mounts every JSON file of a folder at that folder's
// path under data) does not merge two scenarios into one conflicting
// document when it loads policies/.
func TestScenarioLayout(t *testing.T) {
	if err := policy.CheckScenarioLayout(os.DirFS(dir()), policy.ScenarioDir); err != nil {
		t.Fatal(err)
	}
	if err := policy.CheckScenarioLayout(policies.FS(), policy.ScenarioDir); err != nil {
		t.Fatal(err)
	}
}

// opaBinary is the real opa: $XBORDER_OPA, else opa on the PATH, else
// /tmp/opa (where the README says to build it).
func opaBinary() string {
	if p := os.Getenv("XBORDER_OPA"); p != "" {
		return p
	}
	if p, err := exec.LookPath("opa"); err == nil {
		return p
	}
	if _, err := os.Stat("/tmp/opa"); err == nil {
		return "/tmp/opa"
	}
	return ""
}

// TestWithRealOPA runs `opa test policies/` and `opa check --strict
// policies/` with the opa binary of the module version in go.mod, when one
// is present (.ci/run builds it).
func TestWithRealOPA(t *testing.T) {
	bin := opaBinary()
	if bin == "" {
		t.Skip("no opa binary (set XBORDER_OPA, or build it: see policies/README.md)")
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	t.Logf("%s", strings.SplitN(string(out), "\n", 2)[0])
	for _, args := range [][]string{
		// OPA's default of 5 s a test is for a quiet machine; the verdict
		// must not depend on how loaded the machine is.
		{"test", "--timeout", "2m", dir()},
		{"check", "--strict", dir()},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("opa %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("opa %s: %s", strings.Join(args, " "), strings.TrimSpace(lastLine(string(out))))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
