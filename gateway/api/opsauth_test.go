package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/xborder/xborder/gateway/api"
)

// Health, readiness and metrics answer loopback, private and link-local
// callers only; the token-protected endpoints answer a valid token from
// anywhere.
func TestOpsNetworks(t *testing.T) {
	h := api.Ops(api.OpsOptions{Metrics: api.NewMetrics(), Token: []byte("0123456789abcdef0123456789abcdef"),
		AuditExport: func(context.Context, io.Writer) error { return nil }})
	cases := []struct {
		remote, path, auth string
		status             int
		code               string
	}{
		{"127.0.0.1:5000", "/healthz", "", 200, ""},
		{"[::1]:5000", "/metrics", "", 200, ""},
		{"10.1.2.3:5000", "/readyz", "", 200, ""},
		{"172.18.0.1:5000", "/healthz", "", 200, ""}, // a container network's gateway
		{"192.168.1.9:5000", "/healthz", "", 200, ""},
		{"[fd00::1]:5000", "/healthz", "", 200, ""},
		{"[::ffff:10.0.0.1]:5000", "/healthz", "", 200, ""},
		{"8.8.8.8:5000", "/healthz", "", 403, "ops_network_refused"},
		{"8.8.8.8:5000", "/metrics", "", 403, "ops_network_refused"},
		{"[2001:db8::1]:5000", "/readyz", "", 403, "ops_network_refused"},
		{"8.8.8.8:5000", "/audit/export", "", 401, "ops_token_missing"},
		{"8.8.8.8:5000", "/audit/export", "Bearer 0123456789abcdef0123456789abcdef", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.remote+tc.path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			var p api.Problem
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			if w.Code != tc.status || p.Code != tc.code {
				t.Fatalf("%d %q, want %d %q: %s", w.Code, p.Code, tc.status, tc.code, w.Body)
			}
			if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// The operator listener answers a near-miss path with 404 problem+json, not a
// redirect, and labels metrics by method from a closed set: a made-up method
// does not create a series of its own.
func TestOpsNoRedirectsNoMadeUpLabels(t *testing.T) {
	m := api.NewMetrics()
	h := api.Ops(api.OpsOptions{Metrics: m, Token: []byte("0123456789abcdef0123456789abcdef"),
		AuditExport: func(context.Context, io.Writer) error { return nil }})
	for _, path := range []string{"/metrics/", "/healthz/", "//readyz", "/audit/export/"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "127.0.0.1:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound || w.Header().Get("Location") != "" {
			t.Errorf("GET %s: %d Location=%q, want 404 and no redirect", path, w.Code, w.Header().Get("Location"))
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("GET %s: content type %q", path, ct)
		}
	}
	r := gin.New()
	r.Use(m.Observe)
	for _, method := range []string{"FOO", "XYZZY1", "XYZZY2", http.MethodPost} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, "/v1/messages", nil))
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body := w.Body.String()
	if strings.Contains(body, "XYZZY") || strings.Contains(body, `method="FOO"`) {
		t.Errorf("a made-up method became a label:\n%s", body)
	}
	if !strings.Contains(body, `method="other"`) || !strings.Contains(body, `method="POST"`) {
		t.Errorf("no series for other and POST:\n%s", body)
	}
}
