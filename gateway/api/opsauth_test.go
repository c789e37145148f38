package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

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
