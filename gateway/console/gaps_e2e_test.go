package console_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/policies"
)

const formType = "application/x-www-form-urlencoded"

// formToken is the officer's form token, from a console page.
func formToken(t *testing.T, officer *client.Client) string {
	t.Helper()
	r, err := officer.Do(context.Background(), http.MethodGet, "/console/try", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	m := tokenRE.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no form token: %d", r.Status)
	}
	return string(m[1])
}

// upload posts a candidate to the impact page (its answer, not where it
// leads: a new job's id is in its Location).
func upload(t *testing.T, officer *client.Client, token string, candidate []byte, variants int) *client.Response {
	t.Helper()
	officer = client.New(officer.Base, officer.Me)
	officer.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf", token)
	_ = mw.WriteField("variants", strconv.Itoa(variants))
	_ = mw.WriteField("seed", "7")
	fw, _ := mw.CreateFormFile("candidate", "candidate.tar.gz")
	fw.Write(candidate)
	mw.Close()
	r, err := officer.Do(context.Background(), http.MethodPost, "/console/impact", mw.FormDataContentType(), body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// policyTar is the repository's policy folder as a .tar.gz, with files
// changed or added by edit (path → content), and dirs folder headers first.
func policyTar(t *testing.T, dirs int, edit map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: "d" + strconv.Itoa(i) + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, ".json")) {
			return err
		}
		b, err := fs.ReadFile(policies.FS(), p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, s := range edit {
		files[p] = s
	}
	for p, s := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(s)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(s))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

var jobRE = regexp.MustCompile(`/console/impact/([0-9a-f]{16})`)

// waitJob waits until the job's page says it is done, and returns it.
func waitJob(t *testing.T, officer *client.Client, id string) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		r, err := officer.Do(context.Background(), http.MethodGet, "/console/impact/"+id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(r.Body, []byte(`http-equiv="refresh"`)) {
			return string(r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish in time", id)
	return ""
}

// A candidate that writes what it reads into its rule ids and removed
// paths — a name in a rule id, a birth date in redact — gets none of it
// into the shadow report (API and page) or the impact job's pages: a rule
// outside the live catalogue is "an unlisted rule", a path outside
// DOMAIN's "an unlisted field".
func TestReportsShowOnlyTheCatalogue(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles and compares a candidate, and runs a shadow on live traffic")
	}
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := context.Background()
	officer := env.Client("UN-UNOCT")
	token := formToken(t, officer)

	const (
		jobName   = "CANARYJOBNAME"
		jobBorn   = "2011-02-03"
		liveName  = "CANARYLIVENAME"
		liveBorn  = "2012-05-06"
		liveOther = "CANARYLIVESECOND"
	)
	decision, err := fs.ReadFile(policies.FS(), "decision.rego")
	if err != nil {
		t.Fatal(err)
	}
	leaky := strings.Replace(string(decision), `"reasons": reasons,`, `"reasons": array.concat(reasons, _leak_rules),`, 1)
	leaky = strings.Replace(leaky, `"redact": redact,`, `"redact": array.concat(redact, _leak_paths),`, 1)
	if leaky == string(decision) {
		t.Fatal("decision.rego changed: the test's edit no longer applies")
	}
	leaky += `
_leak_rules := [{"rule": n, "message": "read"} | n := input.message.subject.names.primary]

_leak_paths := [b | b := input.message.subject.birth_date]
`
	scenario, err := fs.ReadFile(policies.FS(), "scenarios/s01/s01.json")
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(scenario, &sc); err != nil {
		t.Fatal(err)
	}
	subj := sc["input"].(map[string]any)["message"].(map[string]any)["subject"].(map[string]any)
	subj["names"] = map[string]any{"primary": jobName}
	subj["birth_date"] = jobBorn
	sc["name"] = "canary"
	canary, _ := json.Marshal(sc)

	r := upload(t, officer, token, policyTar(t, 0, map[string]string{
		"decision.rego": leaky, "scenarios/z99-canary/z99-canary.json": string(canary)}), 20)
	m := jobRE.FindStringSubmatch(r.Header.Get("Location") + string(r.Body))
	if r.Status != http.StatusSeeOther || m == nil {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	job := m[1]
	page := waitJob(t, officer, job)
	if strings.Contains(page, "The candidate was refused") {
		t.Fatalf("the candidate was refused:\n%s", page)
	}
	pages := map[string]string{"job": page}
	for _, q := range []string{"source=scenario", "source=synthetic"} {
		for _, by := range []string{"rules", "purpose", "roles"} {
			// Every group of the page, drilled into.
			for _, key := range groupKeys(page, job, q, by) {
				path := "/console/impact/" + job + "/diffs?" + q + "&by=" + by + "&key=" + url.QueryEscape(key)
				r, _ := officer.Do(ctx, http.MethodGet, path, "", nil)
				pages[path] = string(r.Body)
			}
		}
	}
	leaks(t, pages, jobName, jobBorn)
	all := strings.Join(slices.Collect(maps.Values(pages)), "\n")
	if len(pages) < 4 || !strings.Contains(page, impact.UnlistedRule) || !strings.Contains(all, impact.UnlistedField) {
		t.Errorf("the job's pages (%d) do not show the candidate's unlisted rule and field", len(pages))
	}

	// Shadow on live traffic.
	r, _ = officer.Do(ctx, http.MethodPost, "/console/impact/"+job+"/shadow", formType,
		[]byte(url.Values{"csrf": {token}, "minutes": {"10"}}.Encode()))
	if r.Status != http.StatusOK {
		t.Fatalf("shadow start: %d %s", r.Status, r.Body)
	}
	child := gatewaytest.ChildSubject(liveName, liveOther)
	child["birth_date"] = liveBorn
	msg := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification",
		map[string]any{"subject": child, "record": map[string]any{"requested_assertions": []any{"identity_match"}}})
	if r, err := env.Client("UN-UNICEF").Send(ctx, msg); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %v", err, r)
	}
	waitShadow(t, env, 1)
	pages = map[string]string{}
	r, _ = officer.Do(ctx, http.MethodGet, "/v1/policy/shadow", "", nil)
	pages["GET /v1/policy/shadow"] = string(r.Body)
	var rep impact.ShadowReport
	if err := json.Unmarshal(r.Body, &rep); err != nil || rep.Report.Changed != 1 {
		t.Fatalf("shadow report: %v %s", err, r.Body)
	}
	r, _ = officer.Do(ctx, http.MethodGet, "/console/shadow", "", nil)
	pages["/console/shadow"] = string(r.Body)
	for _, g := range rep.Report.ByRules {
		path := "/console/shadow/diffs?by=rules&key=" + url.QueryEscape(g.Key)
		r, _ := officer.Do(ctx, http.MethodGet, path, "", nil)
		pages[path] = string(r.Body)
	}
	leaks(t, pages, liveName, liveBorn, liveOther)
	if d := rep.Report.Diffs; len(d) != 1 || !strings.Contains(strings.Join(d[0].After.Rules, " "), impact.UnlistedRule) ||
		!strings.Contains(strings.Join(d[0].After.Redact, " "), impact.UnlistedField) {
		t.Errorf("shadow differences: %+v", d)
	}
}

// groupKeys are the drill-down keys the job page links to.
func groupKeys(page, job, source, by string) []string {
	re := regexp.MustCompile(regexp.QuoteMeta("/console/impact/"+job+"/diffs?"+source+"&amp;by="+by+"&amp;key=") + `([^"]*)"`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		k, err := url.QueryUnescape(strings.ReplaceAll(m[1], "&amp;", "&"))
		if err == nil {
			out = append(out, k)
		}
	}
	return out
}

func leaks(t *testing.T, pages map[string]string, canaries ...string) {
	t.Helper()
	for name, body := range pages {
		for _, c := range canaries {
			if strings.Contains(body, c) {
				t.Errorf("%s shows %q", name, c)
			}
		}
	}
}

// "Try a decision" reads only a scenario of the list: another file of the
// policy folder, named as the scenario, is never read into the page.
func TestTryReadsOnlyListedScenarios(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.CopyFS(dir, policies.FS()); err != nil {
		t.Fatal(err)
	}
	const secret = "CANARY-HANDOVER-NOTES"
	if err := os.MkdirAll(filepath.Join(dir, "notes"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"notes/handover.txt", "scenarios/notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(secret+" {\"message\": 1}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := gatewaytest.Start(t, func(c *config.Config) { c.Policies = dir })
	officer := env.Client("UN-UNOCT")
	token := formToken(t, officer)
	for _, name := range []string{"notes/handover.txt", "scenarios/notes.txt", "scenarios/../notes/handover.txt", "data.json", "decision.rego"} {
		r, err := officer.Do(context.Background(), http.MethodPost, "/console/try", formType,
			[]byte(url.Values{"csrf": {token}, "scenario": {name}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusUnprocessableEntity || bytes.Contains(r.Body, []byte(secret)) ||
			bytes.Contains(r.Body, []byte("xborder_data")) || bytes.Contains(r.Body, []byte("package xborder")) {
			t.Errorf("scenario=%s: %d, the page shows the file", name, r.Status)
		}
	}
	// A listed scenario is still read.
	r, _ := officer.Do(context.Background(), http.MethodPost, "/console/try", formType,
		[]byte(url.Values{"csrf": {token}, "scenario": {"scenarios/s02/s02.json"}}.Encode()))
	if r.Status != http.StatusOK {
		t.Errorf("a listed scenario: %d", r.Status)
	}
}

// CSP reports are taken from officers only, and counted for them only;
// beyond an officer's quota they are refused, not counted.
func TestCSPReportOfficersOnly(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := context.Background()
	officer := env.Client("UN-UNOCT")
	for _, who := range []string{"KZ-MFA", "UN-UNICEF"} {
		c := env.Client(who)
		if r, _ := c.Do(ctx, http.MethodPost, "/console/csp-report", "application/csp-report", []byte(`{"csp-report":{}}`)); r.Status != http.StatusForbidden {
			t.Errorf("POST csp-report as %s: %d", who, r.Status)
		}
		if r, _ := c.Do(ctx, http.MethodGet, "/console/csp-report", "", nil); r.Status != http.StatusForbidden {
			t.Errorf("GET csp-report as %s: %d %s", who, r.Status, r.Body)
		}
	}
	if n := cspReports(t, env); n != 0 {
		t.Errorf("%d reports counted from non-officers", n)
	}
	if strings.Contains(env.Logs.String(), "content security policy violation") {
		t.Error("a non-officer's report was logged")
	}
	taken := 0
	for i := range 200 {
		r, _ := officer.Do(ctx, http.MethodPost, "/console/csp-report", "application/csp-report", []byte(`{"csp-report":{}}`))
		if r.Status == http.StatusTooManyRequests {
			break
		}
		if r.Status != http.StatusNoContent {
			t.Fatalf("report %d: %d", i, r.Status)
		}
		taken++
	}
	if taken == 200 {
		t.Error("200 reports from one officer were all taken")
	}
	if n := cspReports(t, env); n != taken {
		t.Errorf("%d reports counted, %d taken", n, taken)
	}
}

// An archive is unpacked only when no comparison runs, and every header
// counts against its limits, folders included: folder headers alone are
// refused, not parsed to the end.
func TestArchiveLimitsAndOneAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a candidate and holds its comparison")
	}
	t.Parallel()
	asked, release := make(chan struct{}), make(chan struct{})
	var once bool
	var released sync.Once
	let := func() { released.Do(func() { close(release) }) }
	t.Cleanup(let)
	pkiDir, cfg := gatewaytest.Config(t, pki.DemoFederation())
	env := gatewaytest.StartWith(t, pkiDir, cfg, gateway.WithImpactInputs(
		func(seed int64, live *policy.Bundle, parties []policy.Party, now time.Time) (impact.Source, error) {
			gen, err := impact.Synth(seed, live, parties, now)
			if err != nil {
				return nil, err
			}
			return impact.SourceFunc(func() impact.Case {
				if !once {
					once = true
					close(asked)
					<-release
				}
				return gen.Next()
			}), nil
		}))
	officer := env.Client("UN-UNOCT")
	token := formToken(t, officer)
	data, _ := fs.ReadFile(policies.FS(), "data.json")

	// Folder headers and one data.json: more entries than an archive may
	// hold.
	bomb := policyTar(t, impact.MaxFiles+1, nil)
	if r := upload(t, officer, token, bomb, 1); r.Status != http.StatusUnprocessableEntity || !bytes.Contains(r.Body, []byte("entries")) {
		t.Errorf("an archive of %d folder headers: %d", impact.MaxFiles+1, r.Status)
	}

	// A comparison held in its generated inputs.
	r := upload(t, officer, token, data, 1)
	m := jobRE.FindStringSubmatch(r.Header.Get("Location") + string(r.Body))
	if r.Status != http.StatusSeeOther || m == nil {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	select {
	case <-asked:
	case <-time.After(3 * time.Minute):
		t.Fatal("the comparison did not reach its generated inputs")
	}
	// While it runs, no upload is unpacked: broken or not, each is 409.
	for name, up := range map[string][]byte{"not gzip": {0x1f, 0x8b, 0, 1, 2, 3}, "folder headers": bomb, "a data.json": data} {
		if r := upload(t, officer, token, up, 1); r.Status != http.StatusConflict {
			t.Errorf("%s while a comparison runs: %d", name, r.Status)
		}
	}
	let()
	waitJob(t, officer, m[1])
	if r := upload(t, officer, token, []byte{0x1f, 0x8b, 0, 1, 2, 3}, 1); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("not gzip after the comparison: %d", r.Status)
	}
}
