package console_test

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

var tokenRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestConsoleHTTP checks, without a browser, what every answer must
// carry, who gets in, and that forms need the certificate's token.
func TestConsoleHTTP(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := context.Background()
	officer, other := env.Client("UN-UNOCT"), env.Client("KZ-MFA")

	for _, path := range []string{"/console/", "/console/rules", "/console/try", "/console/impact", "/console/shadow", "/console/subject",
		"/console/rules/module?name=decision.rego"} {
		r, err := officer.Do(ctx, http.MethodGet, path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 200 {
			t.Errorf("%s: %d", path, r.Status)
		}
		h := r.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, h)
		}
		if bytes.Contains(r.Body, []byte("<script")) || bytes.Contains(r.Body, []byte(" style=")) || bytes.Contains(r.Body, []byte("<style")) {
			t.Errorf("%s: inline script or style", path)
		}
		r, _ = other.Do(ctx, http.MethodGet, path, "", nil)
		if r.Status != 403 || !bytes.Contains(r.Body, []byte("compliance officers only")) {
			t.Errorf("%s as KZ-MFA: %d", path, r.Status)
		}
	}

	r, _ := officer.Do(ctx, http.MethodGet, "/console/try", "", nil)
	m := tokenRE.FindSubmatch(r.Body)
	if m == nil {
		t.Fatal("no form token")
	}
	token := string(m[1])
	form := func(tok string) []byte {
		return []byte(url.Values{"csrf": {tok}, "scenario": {"scenarios/s02/s02.json"}}.Encode())
	}
	const formType = "application/x-www-form-urlencoded"
	if r, _ := officer.Do(ctx, http.MethodPost, "/console/try", formType, form(token)); r.Status != 200 || !bytes.Contains(r.Body, []byte("R6")) {
		t.Errorf("try with the token: %d", r.Status)
	}
	if r, _ := officer.Do(ctx, http.MethodPost, "/console/try", formType, form("00"+token[2:])); r.Status != 403 {
		t.Errorf("try with a wrong token: %d", r.Status)
	}
	if r, _ := other.Do(ctx, http.MethodPost, "/console/try", formType, form(token)); r.Status != 403 {
		t.Errorf("another certificate with the officer's token: %d", r.Status)
	}

	// A cross-origin POST is refused even with the token.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, env.URL()+"/console/try", bytes.NewReader(form(token)))
	req.Header.Set("Content-Type", formType)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := officer.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-site POST: %d", resp.StatusCode)
	}

	// An upload with a path out of the folder is refused.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("csrf", token)
	fw, _ := mw.CreateFormFile("candidate", "evil.tar.gz")
	fw.Write(evilTar(t))
	mw.Close()
	if r, _ := officer.Do(ctx, http.MethodPost, "/console/impact", mw.FormDataContentType(), body.Bytes()); r.Status != 422 || !bytes.Contains(r.Body, []byte("refused")) {
		t.Errorf("upload with ..: %d %s", r.Status, r.Body)
	}

	// POST /v1/policy/evaluate takes a scenario file as policy eval does.
	scenario, _ := policyFile(t, "scenarios/s02/s02.json")
	if r, _ := officer.Do(ctx, http.MethodPost, "/v1/policy/evaluate", "application/json", scenario); r.Status != 200 || !bytes.Contains(r.Body, []byte(`"allow":false`)) {
		t.Errorf("evaluate a scenario file: %d %s", r.Status, r.Body)
	}
}
