package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/wire"
)

var ctx = context.Background()

func verificationRequest(from, to string, subject map[string]any) map[string]any {
	return gatewaytest.Message(from, to, "identity.verification.request", "identity-verification", map[string]any{
		"subject": subject,
		"record":  map[string]any{"requested_assertions": []string{"identity_match", "nationality_confirmed"}},
	})
}

func decodeAnswer(t *testing.T, b []byte) wire.AnswerBody {
	t.Helper()
	var a wire.AnswerBody
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}

// The walkthrough of the README: UNICEF asks the Kazakh civil registry to
// verify a child's identity, the registry pulls it and answers, UNICEF
// reads the answer.
func TestVerificationRoundTrip(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef, registry := env.Client("UN-UNICEF"), env.Client("KZ-MJ")

	subject := gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")
	subject["biometrics"] = map[string]any{"modality": "face", "template_ref": "tpl-1", "mode": "1:1", "dpia_id": "DPIA-1"}
	subject["canarykeyname"] = "a sender may use a person's name as a key"
	req := verificationRequest("UN-UNICEF", "KZ-MJ", subject)
	sealed, err := unicef.Seal(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unicef.Post(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	ans := decodeAnswer(t, resp.Body)
	if ans.ID != req["id"] || ans.Status != "accepted" || ans.DecisionID == "" || !strings.HasPrefix(ans.PolicyVersion, "sha256:") {
		t.Fatalf("answer: %+v", ans)
	}
	if !contains(ans.Redacted, "subject.location") || contains(ans.Redacted, "subject.biometrics") {
		t.Errorf("redacted = %v, want subject.location only among these", ans.Redacted)
	}
	rc, err := unicef.VerifyReceipt(ctx, ans.Receipt)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	sum := sha256.Sum256(sealed)
	if rc.ID != ans.ID || rc.From != "UN-UNICEF" || rc.To != "KZ-MJ" || rc.EnvelopeSHA256 != hex.EncodeToString(sum[:]) ||
		rc.DecisionID != ans.DecisionID || rc.PolicyVersion != ans.PolicyVersion {
		t.Errorf("receipt %+v does not match the answer", rc)
	}

	// Only the recipient sees it.
	if ds, err := env.Client("UN-IOM").Inbox(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("IOM inbox: %v %d", err, len(ds))
	}
	ds, err := registry.Inbox(ctx, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("registry inbox: %v %d", err, len(ds))
	}
	d := ds[0]
	msg, prov := d.Payload.Message, d.Payload.Provenance
	if d.MessageID != ans.ID || msg["id"] != ans.ID {
		t.Errorf("delivery for %v, want %s", msg["id"], ans.ID)
	}
	subj := msg["subject"].(map[string]any)
	if _, ok := subj["location"]; ok {
		t.Error("subject.location was delivered")
	}
	if _, ok := subj["biometrics"]; !ok {
		t.Error("1:1 biometrics with a DPIA were removed")
	}
	if prov.DecisionID != ans.DecisionID || prov.PolicyVersion != ans.PolicyVersion || prov.SenderKID != unicef.Me.Signing.KID() ||
		len(prov.SenderJWSSHA256) != 64 || prov.ReceivedAt == "" || !contains(prov.Redacted, "subject.location") {
		t.Errorf("provenance %+v", prov)
	}

	// Not acknowledged yet: sender sees accepted.
	st := status(t, unicef, ans.ID)
	if st.Status != "accepted" {
		t.Errorf("status before ack = %s", st.Status)
	}
	if err := registry.Ack(ctx, d.DeliveryID); err != nil {
		t.Fatal(err)
	}
	if err := registry.Ack(ctx, d.DeliveryID); err == nil {
		t.Error("second ack succeeded")
	}
	if st := status(t, unicef, ans.ID); st.Status != "delivered" {
		t.Errorf("sender status after ack = %s", st.Status)
	}
	if st := status(t, registry, ans.ID); st.Status != "delivered" {
		t.Errorf("recipient status after ack = %s", st.Status)
	}
	if r, _ := env.Client("UN-IOM").Do(ctx, http.MethodGet, "/v1/messages/"+ans.ID, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("a third party reads the status: %d", r.Status)
	}

	// The registry answers; the registry record it adds is removed (R11).
	answer := gatewaytest.Message("KZ-MJ", "UN-UNICEF", "identity.verification.response", "identity-verification", map[string]any{
		"in_reply_to": ans.ID,
		"subject":     map[string]any{"ref": subj["ref"], "names": map[string]any{"primary": "CANARYPRIMARY"}},
		"record": map[string]any{"outcome": "match", "nationality_confirmed": true, "decided_by": "registrar",
			"registry_record": map[string]any{"address": "CANARYADDRESS"}},
	})
	r2, err := registry.Send(ctx, answer)
	if err != nil || r2.Status != http.StatusAccepted {
		t.Fatalf("answer: %v %d %s", err, r2.Status, r2.Body)
	}
	got, err := unicef.Inbox(ctx, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("UNICEF inbox: %v %d", err, len(got))
	}
	rec := got[0].Payload.Message["record"].(map[string]any)
	if rec["outcome"] != "match" || rec["registry_record"] != nil {
		t.Errorf("answer record delivered as %v", rec)
	}
	if n := got[0].Payload.Message["subject"].(map[string]any)["names"]; n != nil {
		t.Errorf("names delivered in an answer: %v", n)
	}

	// An answer to a request that was never made is denied (R15).
	stray := gatewaytest.Message("KZ-MJ", "UN-UNICEF", "identity.verification.response", "identity-verification", map[string]any{
		"in_reply_to": "3f1c2a90-0000-4000-8000-00000000ffff",
		"subject":     map[string]any{"ref": "S-1"},
		"record":      map[string]any{"outcome": "match", "decided_by": "registrar"},
	})
	r3, _ := registry.Send(ctx, stray)
	if p := r3.Problem(); r3.Status != http.StatusForbidden || p.Code != "policy_denied" || !hasRule(p.Reasons, "R15") {
		t.Errorf("stray answer: %d %s", r3.Status, r3.Body)
	}

	assertNoCanary(t, env.Logs.String(), "CANARYPRIMARY", "CANARYSECOND", "CANARYADDRESS", "canarykeyname", subject["birth_date"].(string))
}

func status(t *testing.T, c *client.Client, id string) wire.StatusBody {
	t.Helper()
	r, err := c.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("status of %s: %v %d %s", id, err, r.Status, r.Body)
	}
	var st wire.StatusBody
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

func hasRule(rs []struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}, rule string) bool {
	for _, r := range rs {
		if r.Rule == rule {
			return true
		}
	}
	return false
}

func assertNoCanary(t *testing.T, logs string, canaries ...string) {
	t.Helper()
	if logs == "" {
		t.Fatal("no logs were captured: the canary check would prove nothing")
	}
	for _, c := range canaries {
		if strings.Contains(logs, c) {
			t.Errorf("personal data %q reached the logs", c)
		}
	}
}

// b64 helpers for crafting envelopes outside the profile.
func replaceHeader(t *testing.T, compact []byte, edit func(h map[string]any)) []byte {
	t.Helper()
	parts := strings.Split(string(compact), ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	edit(h)
	nb, _ := json.Marshal(h)
	parts[0] = base64.RawURLEncoding.EncodeToString(nb)
	return []byte(strings.Join(parts, "."))
}

// Every code of PROTOCOL §3.2, produced through the real server.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) { c.BodyLimit = 64 << 10 })
	unicef := env.Client("UN-UNICEF")
	_, gwEnc, err := unicef.GatewayKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(msg map[string]any, key *envelope.PrivateKey) []byte {
		b, _ := json.Marshal(msg)
		jws, err := envelope.Sign(b, key, envelope.TypMessage)
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	seal := func(jws []byte, to *envelope.PublicKey) []byte {
		jwe, err := envelope.Encrypt(jws, to)
		if err != nil {
			t.Fatal(err)
		}
		return jwe
	}
	good := func() map[string]any {
		return verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"))
	}
	stranger, _ := envelope.GenerateP256(envelope.UseSig)

	replayed := good()
	if r, _ := unicef.Send(ctx, replayed); r.Status != http.StatusAccepted {
		t.Fatalf("setup: %d %s", r.Status, r.Body)
	}
	replayedDifferent := map[string]any{}
	for k, v := range replayed {
		replayedDifferent[k] = v
	}
	replayedDifferent["legal_basis"] = "another basis"

	expired := good()
	expired["iat"] = time.Now().Add(-2 * time.Hour).Unix()
	expired["exp"] = time.Now().Add(-90 * time.Minute).Unix()

	screening := gatewaytest.Message("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"),
		"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	unknownTo := good()
	unknownTo["to"] = "XX-NOBODY"
	unknownField := good()
	unknownField["payload"] = "x"

	cases := []struct {
		name        string
		as          string
		contentType string
		body        []byte
		status      int
		code        string
		detail      string
	}{
		{"not a JWE", "UN-UNICEF", "application/jose", []byte("not-a-jwe"), 400, "malformed_envelope", ""},
		{"bad base64", "UN-UNICEF", "application/jose", []byte("!!.!!.!!.!!.!!"), 400, "malformed_envelope", ""},
		{"A128GCM content encryption", "UN-UNICEF", "application/jose",
			replaceHeader(t, seal(sign(good(), unicef.Me.Signing), gwEnc), func(h map[string]any) { h["enc"] = "A128GCM" }), 400, "unsupported_algorithm", ""},
		{"zip header", "UN-UNICEF", "application/jose",
			replaceHeader(t, seal(sign(good(), unicef.Me.Signing), gwEnc), func(h map[string]any) { h["zip"] = "DEF" }), 400, "unsupported_algorithm", ""},
		{"encrypted to another key", "UN-UNICEF", "application/jose",
			seal(sign(good(), unicef.Me.Signing), env.Client("KZ-MJ").Me.Enc.Public()), 400, "decryption_failed", ""},
		{"signed by an unknown key", "UN-UNICEF", "application/jose", seal(sign(good(), stranger), gwEnc), 401, "signature_invalid", ""},
		{"TLS identity differs from sender", "UN-IOM", "application/jose", seal(sign(good(), unicef.Me.Signing), gwEnc), 403, "identity_mismatch", ""},
		{"recipient not registered", "UN-UNICEF", "application/jose", seal(sign(unknownTo, unicef.Me.Signing), gwEnc), 403, "unknown_participant", ""},
		{"same id, different message", "UN-UNICEF", "application/jose", seal(sign(replayedDifferent, unicef.Me.Signing), gwEnc), 409, "replay", ""},
		{"expired", "UN-UNICEF", "application/jose", seal(sign(expired, unicef.Me.Signing), gwEnc), 422, "invalid_message", "expired"},
		{"unknown top-level field", "UN-UNICEF", "application/jose", seal(sign(unknownField, unicef.Me.Signing), gwEnc), 422, "invalid_message", ""},
		{"child border screening", "KZ-MVD", "application/jose", seal(sign(screening, env.Client("KZ-MVD").Me.Signing), gwEnc), 403, "policy_denied", ""},
		{"too large", "UN-UNICEF", "application/jose", bytes.Repeat([]byte("a"), 65<<10), 413, "payload_too_large", ""},
		{"wrong media type", "UN-UNICEF", "application/json", seal(sign(good(), unicef.Me.Signing), gwEnc), 415, "unsupported_media_type", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := env.Client(tc.as).Do(ctx, http.MethodPost, "/v1/messages", tc.contentType, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type %q", ct)
			}
			p := r.Problem()
			if r.Status != tc.status || p.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.Status, p.Code, tc.status, tc.code, r.Body)
			}
			if tc.detail != "" && !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", p.Detail, tc.detail)
			}
			if tc.code == "policy_denied" && (p.DecisionID == "" || !hasRule(p.Reasons, "R6")) {
				t.Errorf("denial without decision id or R6: %s", r.Body)
			}
			if bytes.Contains(r.Body, []byte("CANARY")) {
				t.Errorf("error body leaks message content: %s", r.Body)
			}
		})
	}
	assertNoCanary(t, env.Logs.String(), "CANARYNAME", "CANARYSECOND")
}

// A retry of the same signed message, in a new JWE, gets the original
// answer with 200 and is delivered once.
func TestRetryIsNotReplay(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	_, gwEnc, _ := unicef.GatewayKeys(ctx)
	b, _ := json.Marshal(verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	jws, err := envelope.Sign(b, unicef.Me.Signing, envelope.TypMessage)
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	bodies := make([][]byte, 6)
	for i := range statuses {
		jwe, err := envelope.Encrypt(jws, gwEnc)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r, err := unicef.Post(ctx, jwe)
			if err != nil || r.Status != http.StatusAccepted {
				t.Fatalf("first: %v %d %s", err, r.Status, r.Body)
			}
			first = r.Body
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := unicef.Post(ctx, jwe)
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i], bodies[i] = r.Status, r.Body
		}()
	}
	wg.Wait()
	for i := 1; i < len(statuses); i++ {
		if statuses[i] != http.StatusOK || !bytes.Equal(bodies[i], first) {
			t.Errorf("retry %d: %d %s", i, statuses[i], bodies[i])
		}
	}
	ds, err := env.Client("KZ-MJ").Inbox(ctx, 100)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries: %v %d, want 1", err, len(ds))
	}
}

// When the store cannot write, nothing is accepted: 503 unavailable.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	if _, _, err := unicef.GatewayKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.Gateway.Store.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Problem(); r.Status != http.StatusServiceUnavailable || p.Code != "unavailable" {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	resp, err := http.Get(env.OpsURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz = %d with a closed store", resp.StatusCode)
	}
}

// A sender over its quota gets 429 with Retry-After; others are unaffected.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) {
		c.RateLimits = map[string]int{"UN-UNICEF": 2}
		c.RateWindow = time.Hour
	})
	unicef := env.Client("UN-UNICEF")
	for i := 0; i < 2; i++ {
		if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("send %d: %v %d", i, err, r.Status)
		}
	}
	r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Problem(); r.Status != http.StatusTooManyRequests || p.Code != "rate_limited" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("third send: %d %s (Retry-After %q)", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if r, err := env.Client("KZ-MFA").Send(ctx, verificationRequest("KZ-MFA", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("another sender was limited: %v %d %s", err, r.Status, r.Body)
	}
}

// A retry that comes after the message's time window still gets the
// original answer: the replay store is asked before the clock.
func TestLateRetryGetsOriginalAnswer(t *testing.T) {
	t.Parallel()
	clock := &gatewaytest.Clock{}
	env := gatewaytest.StartClock(t, clock)
	unicef := env.Client("UN-UNICEF")
	msg := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))
	msg["iat"] = clock.Now().Unix() - 298
	b, _ := json.Marshal(msg)
	jws, err := envelope.Sign(b, unicef.Me.Signing, envelope.TypMessage)
	if err != nil {
		t.Fatal(err)
	}
	_, gwEnc, _ := unicef.GatewayKeys(ctx)
	post := func() *client.Response {
		jwe, err := envelope.Encrypt(jws, gwEnc)
		if err != nil {
			t.Fatal(err)
		}
		r, err := unicef.Post(ctx, jwe)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := post()
	if first.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	clock.Advance(3 * time.Second) // iat is now more than 300 s old for the gateway
	if r := post(); r.Status != http.StatusOK || !bytes.Equal(r.Body, first.Body) {
		t.Fatalf("late retry: %d %s", r.Status, r.Body)
	}
	// A new message as old as that, for the gateway's clock, is refused
	// (by the real clock it would still be in its window: this fails if
	// the clock were not the gateway's).
	stale := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))
	stale["iat"], stale["exp"] = msg["iat"], clock.Now().Unix()+100
	r, _ := unicef.Send(ctx, stale)
	if p := r.Problem(); r.Status != http.StatusUnprocessableEntity || p.Detail != "expired" {
		t.Errorf("stale message: %d %s", r.Status, r.Body)
	}
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// The operator listener's metrics count requests, decisions and queue
// depth, by Prometheus naming conventions, with the build described.
func TestMetrics(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	if r, _ := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); r.Status != http.StatusAccepted {
		t.Fatalf("send: %d", r.Status)
	}
	bad := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))
	bad["purpose"] = "border-screening"
	if r, _ := unicef.Send(ctx, bad); r.Status != http.StatusForbidden {
		t.Fatalf("denial: %d", r.Status)
	}
	resp, err := http.Get(env.OpsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`xborder_http_requests_total{code="202",method="POST",route="/v1/messages"} 1`,
		`xborder_http_requests_total{code="403",method="POST",route="/v1/messages"} 1`,
		`xborder_http_request_duration_seconds_bucket{code="202",method="POST",route="/v1/messages"`,
		`xborder_build_info{goversion="go`,
		// Known outcomes exist from the start, at zero.
		`xborder_deliveries_total{outcome="delivered"} 0`,
		`xborder_deliveries_total{outcome="retry"} 0`,
		`xborder_deliveries_total{outcome="dead_lettered"} 0`,
		`xborder_audit_failures_total 0`,
		// The previous release's names, deprecated aliases for one release.
		`xborder_requests_total{route="/v1/messages",status="202"} 1`,
		`xborder_requests_total{route="/v1/messages",status="403"} 1`,
		`xborder_decisions_total{allow="true"`,
		`xborder_decisions_total{allow="false"`,
		`xborder_queue_depth{recipient="KZ-MJ"} 1`,
		`xborder_request_seconds_bucket{route="/v1/messages"`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// With one submission opened, decided and sealed at a time, concurrent
// senders wait their turn: every message is accepted and delivered, none
// refused.
func TestMaxInflightQueuesSubmissions(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) { c.MaxInflight = 1 })
	unicef := env.Client("UN-UNICEF")
	const n = 24
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.Status
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusAccepted {
			t.Fatalf("send %d: %d", i, s)
		}
	}
	ds, err := env.Client("KZ-MJ").Inbox(ctx, 100)
	if err != nil || len(ds) != n {
		t.Fatalf("inbox: %d deliveries, %v; want %d", len(ds), err, n)
	}
}
