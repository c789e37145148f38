package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/adapters/inbox"
	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/gateway/wire"
)

// fakeExchange answers every submission with err (or a 202 when nil).
type fakeExchange struct{ err error }

func (f fakeExchange) Submit(context.Context, string, []byte) (*exchange.Answer, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &exchange.Answer{Status: http.StatusAccepted, Body: []byte(`{"status":"accepted"}`)}, nil
}

func (f fakeExchange) Status(context.Context, string, string) (*wire.StatusBody, error) {
	return nil, f.err
}

type fixture struct {
	reg   *trust.Holder
	certs map[string]tls.Certificate
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := pki.Init(pki.Options{Dir: dir, Participants: pki.DemoFederation()}); err != nil {
		t.Fatal(err)
	}
	reg, err := trust.Load(filepath.Join(dir, "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: trust.NewHolder(reg), certs: map[string]tls.Certificate{}}
	for _, id := range []string{"UN-UNICEF", "UN-UNOCT"} {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, id, "tls.crt"), filepath.Join(dir, id, "tls.key"))
		if err != nil {
			t.Fatal(err)
		}
		f.certs[id] = c
	}
	return f
}

// do sends a request as participant id through the handler.
func (f *fixture) do(t *testing.T, h http.Handler, id, method, path, ctype string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c, ok := f.certs[id]; ok {
		leaf := c.Leaf
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func (f *fixture) handler(t *testing.T, x api.Submitter, logs *bytes.Buffer) http.Handler {
	t.Helper()
	h, err := api.New(api.Options{
		Exchange: x, Registry: f.reg, Inbox: &inbox.Inbox{}, JWKS: func() []byte { return []byte(`{"keys":[]}`) },
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Every error of the pipeline is one problem+json with its stable code and
// the status of PROTOCOL §3.2; the cause is logged with the error id, never
// shown.
func TestProblemMapping(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{&envelope.Error{Code: envelope.CodeMalformedEnvelope, Detail: "base64"}, 400, "malformed_envelope"},
		{&envelope.Error{Code: envelope.CodeUnsupportedAlgorithm, Detail: "alg"}, 400, "unsupported_algorithm"},
		{&envelope.Error{Code: envelope.CodeDecryptionFailed}, 400, "decryption_failed"},
		{&envelope.Error{Code: envelope.CodeSignatureInvalid, Detail: "kid"}, 401, "signature_invalid"},
		{&envelope.Error{Code: envelope.CodeInvalidMessage, Detail: "expired"}, 422, "invalid_message"},
		{&exchange.Error{Code: exchange.CodeIdentityMismatch}, 403, "identity_mismatch"},
		{&exchange.Error{Code: exchange.CodeUnknownParticipant}, 403, "unknown_participant"},
		{&exchange.Error{Code: exchange.CodeReplay}, 409, "replay"},
		{&exchange.Error{Code: exchange.CodePolicyDenied, DecisionID: "d-1", Reasons: []policy.Reason{{Rule: "R6", Message: "m"}}}, 403, "policy_denied"},
		{&exchange.Error{Code: exchange.CodeUnavailable, Err: errors.New("SECRET-CAUSE")}, 503, "unavailable"},
		{&exchange.Error{Code: "no-such-code"}, 500, "internal"},
		{errors.New("SECRET-CAUSE"), 500, "internal"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			var logs bytes.Buffer
			h := f.handler(t, fakeExchange{tc.err}, &logs)
			w := f.do(t, h, "UN-UNICEF", http.MethodPost, "/v1/messages", "application/jose", []byte("x.y.z.a.b"))
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type %q", ct)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("problem is cacheable")
			}
			var p api.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Code != tc.code || p.Status != tc.status || p.Title == "" || p.Type != "urn:xborder:problem:"+tc.code || p.ErrorID == "" {
				t.Errorf("problem %+v", p)
			}
			if strings.Contains(w.Body.String(), "SECRET-CAUSE") {
				t.Error("the cause reached the caller")
			}
			if !strings.Contains(logs.String(), p.ErrorID) {
				t.Error("the error id is not logged")
			}
			if tc.code == "policy_denied" && (p.DecisionID != "d-1" || len(p.Reasons) != 1) {
				t.Errorf("denial without its decision: %+v", p)
			}
		})
	}
}

// What the API refuses itself, before the exchange sees anything.
func TestAPIRefusals(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	h := f.handler(t, fakeExchange{}, &logs)
	cases := []struct {
		name, id, method, path, ctype string
		status                        int
		code                          string
	}{
		{"no client certificate", "", http.MethodPost, "/v1/messages", "application/jose", 403, "unknown_participant"},
		{"wrong media type", "UN-UNICEF", http.MethodPost, "/v1/messages", "application/json", 415, "unsupported_media_type"},
		{"unknown route", "UN-UNICEF", http.MethodGet, "/v1/nothing", "", 404, "not_found"},
		{"wrong method", "UN-UNICEF", http.MethodDelete, "/v1/messages", "", 405, "method_not_allowed"},
		{"compliance only", "UN-UNICEF", http.MethodGet, "/v1/policy", "", 403, "forbidden"},
		{"bad max", "UN-UNICEF", http.MethodGet, "/v1/inbox?max=0", "", 400, "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, h, tc.id, tc.method, tc.path, tc.ctype, nil)
			var p api.Problem
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			if w.Code != tc.status || p.Code != tc.code {
				t.Errorf("got %d %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
		})
	}
	if w := f.do(t, h, "UN-UNICEF", http.MethodPost, "/v1/messages", "application/jose", []byte("x")); w.Code != 202 {
		t.Errorf("a submission the exchange accepts: %d", w.Code)
	}
}
