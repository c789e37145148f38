package gateway_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

// The exchange API cleans no path and redirects nowhere: a path it does
// not serve answers 404 problem+json, whatever its dots and slashes; the
// console keeps its own pages.
func TestNoPathCleaningRedirects(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	kz := env.Client("KZ-MJ")
	kz.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v1/inbox/../messages/ack"},
		{http.MethodPost, "/v1/inbox/./x/ack/"},
		{http.MethodGet, "/v1/inbox/"},
		{http.MethodGet, "//v1/inbox"},
		{http.MethodGet, "/v1//inbox"},
		{http.MethodGet, "/V1/INBOX"},
		{http.MethodGet, "/v1/jwks/"},
		{http.MethodGet, "/console/../v1/inbox"},
	} {
		// The client must send the path as written (no cleaning of its own).
		req, err := http.NewRequestWithContext(ctx, c.method, env.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Path, req.URL.RawPath = c.path, ""
		resp, err := kz.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s %s: %d %s (Location %q)", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Location"))
		}
	}
	// The console's own paths still lead to its pages.
	officer := env.Client("UN-UNOCT")
	officer.HTTP.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if r, _ := officer.Do(ctx, http.MethodGet, "/console", "", nil); r.Status != http.StatusMovedPermanently || r.Header.Get("Location") != "/console/" {
		t.Errorf("/console: %d %q", r.Status, r.Header.Get("Location"))
	}
	if r, _ := officer.Do(ctx, http.MethodGet, "/console/rules", "", nil); r.Status != http.StatusOK {
		t.Errorf("/console/rules: %d", r.Status)
	}
}

// A subject report names its subject in the body (PROTOCOL's GET ?ref=
// stays for clients written from it), and
// a participant gets a bounded number of them per window (429
// problem+json, code rate_limited), over the API and the console alike.
func TestSubjectReportInTheBodyAndLimited(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	officer := env.Client("UN-UNOCT")
	const ref = "S-CANARY-URL"
	// PROTOCOL §5's GET ?ref= is answered, and counts against the quota.
	if r, _ := officer.Do(ctx, http.MethodGet, "/v1/audit/subject?ref="+ref, "", nil); r.Status != http.StatusOK {
		t.Errorf("GET with ?ref= (PROTOCOL §5): %d %s", r.Status, r.Body)
	}
	if r, _ := officer.Do(ctx, http.MethodPost, "/v1/audit/subject?ref="+ref, "application/json", nil); r.Status != http.StatusBadRequest ||
		r.Problem().Code != "bad_request" {
		t.Errorf("POST with the ref in the URL only: %d %s", r.Status, r.Body)
	}
	// The console's form posts the reference.
	page, _ := officer.Do(ctx, http.MethodGet, "/console/subject?ref="+ref, "", nil)
	if page.Status != http.StatusOK || bytes.Contains(page.Body, []byte(ref)) {
		t.Errorf("console GET with ?ref=: %d, shows the ref: %t", page.Status, bytes.Contains(page.Body, []byte(ref)))
	}
	token := consoleToken(t, page.Body)
	if r, _ := officer.Do(ctx, http.MethodPost, "/console/subject", "application/x-www-form-urlencoded",
		[]byte("csrf="+token+"&ref="+ref)); r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`id="subject-report"`)) {
		t.Errorf("console subject report: %d", r.Status)
	}
	taken := 3 // the GET, the refused POST and the console's report counted
	for range gateway.SubjectReports.Limit * 2 {
		r, _ := officer.Do(ctx, http.MethodPost, "/v1/audit/subject", "application/json", []byte(`{"ref":"`+ref+`"}`))
		if r.Status == http.StatusTooManyRequests {
			if p := r.Problem(); p.Code != "rate_limited" || r.Header.Get("Retry-After") == "" {
				t.Errorf("limited: %s (Retry-After %q)", r.Body, r.Header.Get("Retry-After"))
			}
			break
		}
		if r.Status != http.StatusOK {
			t.Fatalf("subject report: %d %s", r.Status, r.Body)
		}
		taken++
	}
	if taken != gateway.SubjectReports.Limit {
		t.Errorf("%d subject reports answered, the quota is %d", taken, gateway.SubjectReports.Limit)
	}
	// The console counts against the same quota.
	if r, _ := officer.Do(ctx, http.MethodPost, "/console/subject", "application/x-www-form-urlencoded",
		[]byte("csrf="+token+"&ref="+ref)); r.Status != http.StatusTooManyRequests {
		t.Errorf("console subject report beyond the quota: %d", r.Status)
	}
	// Anyone else is refused as before: the quota is an officer's.
	if r, _ := env.Client("KZ-MFA").Do(ctx, http.MethodPost, "/v1/audit/subject", "application/json", []byte(`{"ref":"`+ref+`"}`)); r.Status != http.StatusForbidden {
		t.Errorf("a non-officer: %d", r.Status)
	}
}

func consoleToken(t *testing.T, page []byte) string {
	t.Helper()
	const mark = `name="csrf" value="`
	i := bytes.Index(page, []byte(mark))
	if i < 0 {
		t.Fatal("no form token on the page")
	}
	rest := page[i+len(mark):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}
