package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// policy impact names a candidate path that is not there, and takes a
// data.json alone (a file, or a folder holding only it) over the Rego of
// the policy in force, as the console does.
func TestImpactCandidatePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and tests the policy several times (seconds each)")
	}
	t.Parallel()
	root := gatewaytest.RepoRoot()
	pol := filepath.Join(root, "policies")
	data, err := os.ReadFile(filepath.Join(pol, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file", "data.json")
	writeFile(t, file, data)
	only := filepath.Join(dir, "only")
	writeFile(t, filepath.Join(only, "data.json"), data)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		candidate string
		code      int
		want      []string
	}{
		{"missing", filepath.Join(dir, "nonexistent"), 2, []string{filepath.Join(dir, "nonexistent"), "no such file or folder"}},
		{"empty folder", empty, 2, []string{empty, "neither Rego files nor a data.json"}},
		{"data.json file", file, 0, []string{"synthetic: 0 of 20 decisions change", "data.json over the Rego of"}},
		{"folder with data.json only", only, 0, []string{"synthetic: 0 of 20 decisions change", "data.json over the Rego of"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runBin(t, dir, nil, "policy", "impact", "--policies", pol, "--candidate", tc.candidate, "--variants", "20")
			all := out + errOut
			if code != tc.code || strings.Contains(all, "stat .") {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\nstdout: %s\nstderr: %s", w, out, errOut)
				}
			}
		})
	}
}

// A candidate a running gateway would refuse (its own tests fail) is a
// negative answer: exit 1 and why. Progress goes to stderr, one line per
// 10 % when stderr is not a terminal.
func TestImpactRefusedCandidate(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and tests the policy twice (seconds)")
	}
	t.Parallel()
	pol := filepath.Join(gatewaytest.RepoRoot(), "policies")
	data, err := os.ReadFile(filepath.Join(pol, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cand := filepath.Join(dir, "data.json")
	// The age of majority at 21: the Rego tests about 18 fail.
	writeFile(t, cand, bytes.Replace(data, []byte(`"adult": 18`), []byte(`"adult": 21`), 1))
	out, errOut, code := runBin(t, dir, nil, "policy", "impact", "--policies", pol, "--candidate", cand, "--variants", "40", "--progress-after", "0s")
	if code != 1 || !strings.Contains(out, "a running gateway would refuse it") || !strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d, want 1 and the refusal\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var pcts []string
	for _, m := range regexp.MustCompile(`(?m)^impact: (\d+) %`).FindAllStringSubmatch(errOut, -1) {
		pcts = append(pcts, m[1])
	}
	if strings.Join(pcts, ",") != "10,20,30,40,50,60,70,80,90,100" {
		t.Errorf("progress lines %v, want one per 10 %%:\n%s", pcts, errOut)
	}
	if strings.Contains(errOut, "\r") {
		t.Errorf("a progress bar on a stderr that is not a terminal:\n%q", errOut)
	}

	// JSON says it too, with the same exit code.
	out, errOut, code = runBin(t, dir, nil, "policy", "impact", "--policies", pol, "--candidate", cand, "--variants", "0", "--format", "json")
	var v struct {
		Refused bool     `json:"refused"`
		Why     []string `json:"refused_because"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 1 || !v.Refused || len(v.Why) == 0 {
		t.Errorf("json: exit %d, %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}

	// A candidate that does not compile is refused too.
	bad := filepath.Join(dir, "bad")
	writeFile(t, filepath.Join(bad, "data.json"), data)
	writeFile(t, filepath.Join(bad, "x.rego"), []byte("package xborder.x\n\nthis is not rego\n"))
	out, errOut, code = runBin(t, dir, nil, "policy", "impact", "--policies", pol, "--candidate", bad, "--variants", "0")
	if code != 1 || !strings.Contains(out, "a running gateway would refuse it") {
		t.Errorf("a candidate that does not compile: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// On a terminal the progress is one bar redrawn in place, ended by a
// newline.
func TestImpactProgressBar(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := &progress{w: &b, tty: true, shown: -1}
	for i := 1; i <= 200; i++ {
		p.tell(i, 200)
	}
	p.finish()
	out := b.String()
	if strings.Count(out, "\r") != 101 || !strings.HasSuffix(out, "] 100 % (200 of 200)\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("bar: %q", out)
	}
}
