package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
)

// browserResult is what console.mjs read on the pages.
type browserResult struct {
	Errors             []string `json:"errors"`
	Shots              []string `json:"shots"`
	FirstFocus         string   `json:"firstFocus"`
	Total24            string   `json:"total24"`
	Overflow320        int      `json:"overflow320"`
	Rules              []string `json:"rules"`
	History            []string `json:"history"`
	Refused            string   `json:"refused"`
	TryDecision        string   `json:"tryDecision"`
	TryRemoved         []string `json:"tryRemoved"`
	SubjectRows        int      `json:"subjectRows"`
	JobURL             string   `json:"jobURL"`
	TestSummary        string   `json:"testSummary"`
	ScenarioChanged    int      `json:"scenarioChanged"`
	ScenarioBorderA2D  int      `json:"scenarioBorderA2D"`
	SyntheticChanged   int      `json:"syntheticChanged"`
	SyntheticFigures   string   `json:"syntheticFigures"`
	SyntheticBorderA2D int      `json:"syntheticBorderA2D"`
	DrillRows          int      `json:"drillRows"`
	Verify             string   `json:"verify"`
	OtherStatus        int      `json:"otherStatus"`
	OtherText          string   `json:"otherText"`
	Observed           int      `json:"observed"`
	Compared           int      `json:"compared"`
	Dropped            int      `json:"dropped"`
	ShadowChanged      int      `json:"shadowChanged"`
	ShadowBorderA2D    int      `json:"shadowBorderA2D"`
	ShadowDrill        []string `json:"shadowDrill"`
}

func chromiumPath() string {
	if p := os.Getenv("XBORDER_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// TestConsoleInBrowser starts a real gateway, sends real traffic, and
// drives Debian's chromium (playwright-core, with the compliance officer's
// client certificate) through every page of the console: overview with
// live figures, rules, a module, try a decision, the subject report (and
// as printed), the impact of raising the age of majority to 21 (whose
// effect is computed here independently), a shadow run over live traffic,
// the audit verification, and the 403 page for a participant that is not
// a compliance officer. No console error, page error or CSP violation is
// allowed. Screenshots of every page go to a folder named in the log when
// the test fails (and are removed when it passes).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("drives chromium through every page of the console")
	}
	chromium := chromiumPath()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on the PATH (apt-get install nodejs npm)")
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "browser"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("no npm on the PATH to install playwright-core")
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	// The screenshots are kept only when the test fails, for looking at;
	// the browser's own temporary files (its profile folders) go under a
	// folder of the test's, removed whatever happens.
	shots, err := os.MkdirTemp("", "xborder-console-shots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screenshots kept: %s", shots)
			return
		}
		os.RemoveAll(shots)
	})
	browserTmp, err := os.MkdirTemp("", "xborder-console-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(browserTmp) })

	env := gatewaytest.Start(t)
	ctx := context.Background()
	live := env.Gateway.Policy.Current()

	// Real traffic before the browser looks: three identity verifications
	// of a child (allowed, trimmed) and two border screenings of the same
	// child (denied, R6).
	ref := "S-BROWSER-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	decisions := 0
	send := func(from, to, typ, purpose string, subject map[string]any) int {
		t.Helper()
		msg := gatewaytest.Message(from, to, typ, purpose, map[string]any{
			"subject": subject, "record": map[string]any{"requested_assertions": []any{"identity_match"}}})
		r, err := env.Client(from).Send(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 202 && !(r.Status == 403 && r.Problem().Code == "policy_denied") {
			t.Fatalf("%s → %s %s: %d %s", from, to, purpose, r.Status, r.Body)
		}
		decisions++
		return r.Status
	}
	child := gatewaytest.ChildSubject("CANARY", "BROWSER")
	child["ref"] = ref
	for range 3 {
		if send("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", child) != 202 {
			t.Fatal("a verification request was refused")
		}
	}
	for range 2 {
		if send("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", child) != 403 {
			t.Fatal("border screening of a child was accepted")
		}
	}

	// A refused edit of policies/: a data.json the schema refuses. The
	// overview, the history, the audit log and the metrics must say so.
	data, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), "policies", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	broken, err := impact.Candidate(live.FS(), bytes.Replace(data, []byte(`"adult": 18`), []byte(`"adult": "18"`), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Gateway.Policy.Reload(ctx, broken); err == nil {
		t.Fatal("a data.json with a string age was accepted")
	}

	// The candidate: data.json with the age of majority at 21.
	candidate := filepath.Join(t.TempDir(), "data.json")
	if err := os.WriteFile(candidate, bytes.Replace(data, []byte(`"adult": 18`), []byte(`"adult": 21`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	// The console compares on 10,000 generated inputs by default; the test
	// asks for fewer (its expectation is computed from the same draw either
	// way): XBORDER_CONSOLE_VARIANTS=10000 for the full run.
	const seed = 42
	variants := 2000
	if v, err := strconv.Atoi(os.Getenv("XBORDER_CONSOLE_VARIANTS")); err == nil && v > 0 {
		variants = v
	}
	cfg := map[string]any{
		"chromium": chromium, "base": env.URL(), "shots": shots,
		"officer": filepath.Join(env.PKI, "UN-UNOCT"), "other": filepath.Join(env.PKI, "KZ-MFA"),
		"tryScenario": "scenarios/s16/s16.json", "subjectRef": ref,
		"candidate": candidate, "variants": variants, "seed": seed, "jobTimeoutMs": 8 * 60 * 1000,
	}
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	browse := func(phase string) browserResult {
		t.Helper()
		cmd := exec.Command(node, "console.mjs", cfgPath, phase)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TMPDIR="+browserTmp)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("node console.mjs %s: %v\n%s\n%s", phase, err, stdout.String(), stderr.String())
		}
		var res browserResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("%v: %s\n%s", err, stdout.String(), stderr.String())
		}
		t.Logf("browser phase %s: %s, %d screenshots", phase, time.Since(start).Round(time.Second), len(res.Shots))
		for _, e := range res.Errors {
			t.Errorf("browser: %s", e)
		}
		return res
	}

	one := browse("one")
	if one.FirstFocus != "Skip to content" {
		t.Errorf("first Tab stop: %q", one.FirstFocus)
	}
	if want := "Last 24 hours: " + strconv.Itoa(decisions) + " decisions (0 allowed, 3 trimmed, 2 denied)"; one.Total24 != want {
		t.Errorf("overview: %q, want %q", one.Total24, want)
	}
	if !strings.Contains(one.Refused, "xborder_data.thresholds.adult") {
		t.Errorf("overview does not show the refused version: %q", one.Refused)
	}
	if len(one.History) == 0 || !strings.Contains(one.History[0], "refused") || !strings.Contains(one.History[0], "xborder_data.thresholds.adult") ||
		!strings.Contains(one.History[0], "audit log") {
		t.Errorf("rules history: %q", one.History)
	}
	if one.Overflow320 > 320 {
		t.Errorf("at 320 px the page is %d px wide", one.Overflow320)
	}
	for i := 1; i <= 16; i++ {
		if !slices.Contains(one.Rules, "R"+strconv.Itoa(i)) {
			t.Errorf("rule map lacks R%d: %v", i, one.Rules)
		}
	}
	if !strings.Contains(one.TryDecision, "allowed") || !slices.Contains(one.TryRemoved, "biometrics R12") {
		t.Errorf("try s16: %q, removed %v", one.TryDecision, one.TryRemoved)
	}
	if one.SubjectRows != decisions {
		t.Errorf("subject report: %d rows, want %d", one.SubjectRows, decisions)
	}

	// The impact of adult = 21, computed here from DOMAIN.md and not from
	// the console: R6 never sends a child's data for border-screening, so
	// every border-screening input the policy in force allows about
	// someone 18 to 20 years old (age computed by impact.AgeOf from the
	// input, R4) must turn into a denial under the candidate.
	wantScen, wantSynth := 0, 0
	for _, in := range scenarioInputs(t, live) {
		if flips(ctx, live, in) {
			wantScen++
		}
	}
	gen, err := impact.Synth(seed, live, impact.Parties(env.Gateway.Registry.Load().Participants()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for range variants {
		if flips(ctx, live, gen.Next().Input) {
			wantSynth++
		}
	}
	t.Logf("impact of adult=21: %s; scenarios: %d changed; border-screening allowed → denied: scenarios %d (expected %d), generated %d (expected %d)",
		one.SyntheticFigures, one.ScenarioChanged, one.ScenarioBorderA2D, wantScen, one.SyntheticBorderA2D, wantSynth)
	if one.ScenarioBorderA2D != wantScen || wantScen == 0 {
		t.Errorf("scenarios: border-screening allowed → denied %d, want %d", one.ScenarioBorderA2D, wantScen)
	}
	if one.SyntheticBorderA2D != wantSynth || wantSynth == 0 {
		t.Errorf("generated: border-screening allowed → denied %d, want %d", one.SyntheticBorderA2D, wantSynth)
	}
	if !strings.Contains(one.TestSummary, "failed") || one.DrillRows == 0 {
		t.Errorf("tests %q, drill-down rows %d", one.TestSummary, one.DrillRows)
	}
	if !strings.HasPrefix(one.Verify, "Verified") {
		t.Errorf("audit verification: %q", one.Verify)
	}
	if one.OtherStatus != http.StatusForbidden || !strings.Contains(one.OtherText, "compliance officers only") {
		t.Errorf("non-compliance certificate: %d %q", one.OtherStatus, one.OtherText)
	}

	// Live traffic in shadow: border screenings of people aged 16 to 35.
	// The policy in force allows 18 and over; the candidate denies 18 to 20.
	wantShadow, during := 0, 0
	for _, age := range []int{16, 18, 19, 20, 21, 35, 16, 18, 19, 20, 21, 35} {
		adult := gatewaytest.ChildSubject("CANARY", "SHADOW")
		adult["birth_date"] = time.Now().UTC().AddDate(-age, 0, -10).Format("2006-01-02")
		status := send("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", adult)
		during++
		if (status == 202) != (age >= 18) {
			t.Fatalf("age %d: status %d", age, status)
		}
		if age >= 18 && age <= 20 {
			wantShadow++
		}
	}
	for range 2 {
		send("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", child)
		during++
	}
	waitShadow(t, env, during)

	two := browse("two")
	t.Logf("shadow: observed %d, compared %d, dropped %d, changed %d, border-screening allowed → denied %d (expected %d)",
		two.Observed, two.Compared, two.Dropped, two.ShadowChanged, two.ShadowBorderA2D, wantShadow)
	if two.Observed != during || two.Compared != during || two.Dropped != 0 {
		t.Errorf("shadow saw %d, compared %d, dropped %d; %d were sent", two.Observed, two.Compared, two.Dropped, during)
	}
	if two.ShadowBorderA2D != wantShadow || two.ShadowChanged != wantShadow || len(two.ShadowDrill) != wantShadow {
		t.Errorf("shadow: %d changed, %d border-screening allowed → denied, drill-down %v; want %d", two.ShadowChanged, two.ShadowBorderA2D, two.ShadowDrill, wantShadow)
	}
	if want := "Last 24 hours: " + strconv.Itoa(decisions) + " decisions"; !strings.HasPrefix(two.Total24, want) {
		t.Errorf("overview after traffic: %q, want %q…", two.Total24, want)
	}

	// The shadow report over the API, for compliance officers.
	r, err := env.Client("UN-UNOCT").Do(ctx, http.MethodGet, "/v1/policy/shadow", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var api impact.ShadowReport
	if err := json.Unmarshal(r.Body, &api); r.Status != 200 || err != nil || api.Report.Changed != wantShadow {
		t.Errorf("GET /v1/policy/shadow: %d %v %s", r.Status, err, r.Body)
	}
	if r, _ := env.Client("KZ-MFA").Do(ctx, http.MethodGet, "/v1/policy/shadow", "", nil); r == nil || r.Status != 403 {
		t.Errorf("GET /v1/policy/shadow as KZ-MFA: %v", r)
	}
	// The metrics: each decision counted once, the refused reload, the
	// version in force.
	metrics := scrape(t, env.OpsURL()+"/metrics")
	if got := metricSum(metrics, "xborder_decisions_total{"); got != decisions {
		t.Errorf("xborder_decisions_total sums to %d, %d decisions were made", got, decisions)
	}
	for _, want := range []string{`xborder_policy_reloads_total{result="refused"} 1`, `xborder_policy_info{version="` + live.Version + `"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No CSP violation was reported to the gateway either.
	if n := cspReports(t, env); n != 0 {
		t.Errorf("%d CSP violation reports", n)
	}
	if strings.Contains(env.Logs.String(), "CANARY") {
		t.Error("personal data reached the gateway's log")
	}
}

// flips: a border-screening input about someone 18 to 20 that the policy
// in force allows.
func flips(ctx context.Context, live *policy.Bundle, in policy.Input) bool {
	if in.Message["purpose"] != "border-screening" {
		return false
	}
	age, ok := impact.AgeOf(in)
	if !ok || age < 18 || age > 20 {
		return false
	}
	for range 3 { // a busy machine may time an evaluation out
		if d, err := live.Decide(ctx, in); err == nil {
			return d.Allow
		}
	}
	return false
}

func scenarioInputs(t *testing.T, b *policy.Bundle) []policy.Input {
	names, err := policy.ScenarioFiles(b.FS(), policy.ScenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []policy.Input
	for _, n := range names {
		s, err := policy.LoadScenario(b.FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s.Input)
	}
	return out
}

// waitShadow waits until the shadow run has compared n decisions.
func waitShadow(t *testing.T, env *gatewaytest.Env, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if r := env.Gateway.Console.ShadowReport(); r != nil && r.Report.Inputs+int(r.Dropped) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the shadow run did not compare %d decisions in time", n)
}

func cspReports(t *testing.T, env *gatewaytest.Env) int {
	t.Helper()
	r, err := env.Client("UN-UNOCT").Do(context.Background(), http.MethodGet, "/console/csp-report", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(r.Body)))
	if err != nil {
		t.Fatalf("csp-report: %s", r.Body)
	}
	return n
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricSum adds the values of the series whose line starts with prefix.
func metricSum(metrics, prefix string) int {
	sum := 0
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += int(v)
	}
	return sum
}
