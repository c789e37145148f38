package policies_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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
// /tmp/opa (where policies/README.md builds it), else the one .ci/run
// builds, else one this test builds from the module cache (as .ci/run
// does) into the user's cache folder, kept for the next run. The empty
// string comes with the reason.
func opaBinary(t *testing.T) (string, string) {
	if p := os.Getenv("XBORDER_OPA"); p != "" {
		return p, ""
	}
	if p, err := exec.LookPath("opa"); err == nil {
		return p, ""
	}
	if _, err := os.Stat("/tmp/opa"); err == nil {
		return "/tmp/opa", ""
	}
	root := filepath.Dir(dir())
	goCmd := func(args ...string) (string, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return strings.TrimSpace(string(out)), err
	}
	version, err := goCmd("list", "-m", "-f", "{{.Version}}", opaModule)
	if err != nil {
		return "", "no opa binary, and the module version of opa is unknown: " + err.Error()
	}
	ci := filepath.Join(os.TempDir(), "xborder-ci-opa-"+version) // .ci/run's
	if _, err := os.Stat(ci); err == nil {
		return ci, ""
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "no opa binary, and no cache folder to build one into: " + err.Error()
	}
	bin := filepath.Join(cache, "xborder", "opa-"+version)
	if _, err := os.Stat(bin); err == nil {
		return bin, ""
	}
	if _, err := goCmd("mod", "download", opaModule); err != nil {
		return "", "no opa binary, and the opa module cannot be downloaded to build one: " + err.Error()
	}
	src, err := goCmd("list", "-m", "-f", "{{.Dir}}", opaModule)
	if err != nil || src == "" {
		return "", fmt.Sprintf("no opa binary, and the opa module is not in the module cache: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", "no opa binary, and no cache folder to build one into: " + err.Error()
	}
	// Built beside its final name and renamed: a run beside this one, or
	// one cut short, never finds half a binary.
	tmp := fmt.Sprintf("%s.%d.partial", bin, os.Getpid())
	defer os.Remove(tmp)
	t.Logf("building opa %s from %s into %s (once; later runs reuse it)", version, src, bin)
	start := time.Now()
	build := exec.Command("go", "build", "-o", tmp, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("no opa binary, and building opa %s from %s failed: %v\n%s", version, src, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", "no opa binary: " + err.Error()
	}
	t.Logf("built opa in %s", time.Since(start).Round(time.Second))
	return bin, ""
}

const opaModule = "github.com/open-policy-agent/opa"

// skipVisibly skips with the reason, and writes it to the terminal as
// well: go test shows a passing package's output only with -v, and a test
// of the policy against the real opa must not go missing unseen.
func skipVisibly(t *testing.T, reason string) {
	t.Helper()
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(tty, "--- SKIP: %s: %s\n", t.Name(), reason)
		tty.Close()
	}
	t.Skip(reason)
}

// TestWithRealOPA runs `opa test policies/` and `opa check --strict
// policies/` with the opa binary of the module version in go.mod: given,
// found, or built from the module cache (opaBinary).
func TestWithRealOPA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every Rego test again in the real opa (seconds); gateway/policy's TestBundleTest runs them in-process")
	}
	bin, why := opaBinary(t)
	if bin == "" {
		skipVisibly(t, why)
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
