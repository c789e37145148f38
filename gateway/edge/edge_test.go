package edge_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/edge"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

// running is one edge started for a test.
type running struct {
	t    *testing.T
	e    *edge.Edge
	cfg  config.Edge
	logs *gatewaytest.SyncBuffer
	stop func()
}

func (r *running) url(path string) string { return "http://" + r.e.Addr() + path }
func (r *running) ops(path string) string { return "http://" + r.e.OpsAddr() + path }

// startEdge runs an edge for participant id against the hub at hubURL,
// with the PKI folder's registry and keys, on free loopback ports.
func startEdge(t *testing.T, pkiDir, hubURL, id, deliver string, edit func(*config.Edge), o edge.Options) *running {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Edge{
		Participant: id, ParticipantKeys: filepath.Join(pkiDir, id), Hub: hubURL,
		Registry: filepath.Join(pkiDir, pki.RegistryFile), Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0",
		Store: "bolt:" + filepath.Join(dir, "edge.db"), Deliver: deliver,
	}
	if edit != nil {
		edit(&cfg)
	}
	logs := &gatewaytest.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	e, err := edge.New(ctx, cfg, log, o)
	if err != nil {
		cancel()
		t.Fatalf("edge %s: %v", id, err)
	}
	if err := e.Listen(); err != nil {
		cancel()
		t.Fatalf("edge %s: %v", id, err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	r := &running{t: t, e: e, cfg: cfg, logs: logs}
	r.stop = func() {
		if cancel == nil {
			return
		}
		cancel()
		cancel = nil
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("edge %s did not stop", id)
		}
		if err := gatewaytest.CheckLogLines([]byte(logs.String())); err != nil {
			t.Errorf("edge %s log: %v", id, err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Body, &m); err != nil {
		t.Fatalf("answer %d %s: %v", a.Status, a.Body, err)
	}
	return m
}

func call(t *testing.T, method, url string, body any, hdr map[string]string) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// waitFor polls cond until it holds (the event), failing after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finalStatus waits until the message leaves "queued" and returns its status document.
func finalStatus(t *testing.T, r *running, statusURL string) map[string]any {
	t.Helper()
	var doc map[string]any
	waitFor(t, 30*time.Second, "a final answer at "+statusURL, func() bool {
		a := call(t, http.MethodGet, r.url(statusURL), nil, nil)
		if a.Status != http.StatusOK {
			t.Fatalf("status: %d %s", a.Status, a.Body)
		}
		doc = a.json(t)
		return doc["status"] != "queued"
	})
	return doc
}

func verificationRequest(subject map[string]any) map[string]any {
	return map[string]any{
		"to": "KZ-MJ", "type": "identity.verification.request", "purpose": "identity-verification",
		"subject": subject,
		"record":  map[string]any{"requested_assertions": []string{"identity_match", "nationality_confirmed"}},
	}
}

func assertNoCanary(t *testing.T, who, logs string, canaries ...string) {
	t.Helper()
	if logs == "" {
		t.Fatalf("%s: no logs were captured: the canary check would prove nothing", who)
	}
	for _, c := range canaries {
		if strings.Contains(logs, c) {
			t.Errorf("%s: personal data %q reached the logs", who, c)
		}
	}
}

// The proof of issue 21: UNICEF's system posts plain JSON to its edge, the
// hub accepts it, KZ-MJ's edge hands it to a folder, KZ-MJ's system answers
// through its edge, and UNICEF's system reads the answer from its edge's
// local inbox. No JOSE on either system's side; nothing personal in any log.
func TestEdgesRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and two edges and waits for the exchange")
	}
	hub := gatewaytest.Start(t)
	drop := filepath.Join(t.TempDir(), "kz-inbox")
	unicef := startEdge(t, hub.PKI, hub.URL(), "UN-UNICEF", "local", nil, edge.Options{Poll: 50 * time.Millisecond})
	kz := startEdge(t, hub.PKI, hub.URL(), "KZ-MJ", "file:"+drop, nil, edge.Options{Poll: 50 * time.Millisecond})

	subject := gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")
	req := verificationRequest(subject)
	a := call(t, http.MethodPost, unicef.url("/v1/outbox"), req, map[string]string{"Idempotency-Key": "case-4711-verify"})
	if a.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/outbox: %d %s", a.Status, a.Body)
	}
	ans := a.json(t)
	id, _ := ans["id"].(string)
	if ans["status"] != "queued" || ans["status_url"] != "/v1/outbox/"+id || len(id) != 36 {
		t.Fatalf("answer %v", ans)
	}

	// The same key and body: the same message, not a second one.
	again := call(t, http.MethodPost, unicef.url("/v1/outbox"), req, map[string]string{"Idempotency-Key": "case-4711-verify"})
	if again.Status != http.StatusOK || again.json(t)["id"] != id {
		t.Fatalf("idempotent repeat: %d %s", again.Status, again.Body)
	}
	other := verificationRequest(gatewaytest.ChildSubject("CANARYPRIMARY", "OTHER"))
	if c := call(t, http.MethodPost, unicef.url("/v1/outbox"), other, map[string]string{"Idempotency-Key": "case-4711-verify"}); c.Status != http.StatusConflict ||
		c.json(t)["code"] != "idempotency_conflict" || c.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("same key, other body: %d %s", c.Status, c.Body)
	}

	st := finalStatus(t, unicef, "/v1/outbox/"+id)
	rc, _ := st["receipt"].(map[string]any)
	if st["status"] != "accepted" || rc == nil || rc["decision_id"] == "" || !strings.HasPrefix(rc["policy_version"].(string), "sha256:") || st["attempts"] != float64(1) {
		t.Fatalf("status %v", st)
	}

	// KZ-MJ's edge hands it over as DELIVERY_ID.json.
	var file string
	waitFor(t, 30*time.Second, "the hand-over file", func() bool {
		m, _ := filepath.Glob(filepath.Join(drop, "*.json"))
		if len(m) == 1 {
			file = m[0]
		}
		return file != ""
	})
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc edge.HandOver
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("hand-over %s: %v", raw, err)
	}
	if filepath.Base(file) != doc.DeliveryID+".json" || doc.Message["id"] != id || doc.Message["from"] != "UN-UNICEF" ||
		doc.Provenance.DecisionID != rc["decision_id"] || len(doc.Provenance.SenderJWSSHA256) != 64 {
		t.Fatalf("hand-over %s: %+v", file, doc)
	}
	ref := doc.Message["subject"].(map[string]any)["ref"]

	// KZ-MJ's system answers through its edge.
	resp := map[string]any{
		"to": "UN-UNICEF", "type": "identity.verification.response", "purpose": "identity-verification", "in_reply_to": id,
		"subject": map[string]any{"ref": ref},
		"record":  map[string]any{"outcome": "match", "nationality_confirmed": true, "decided_by": "registrar"},
	}
	a2 := call(t, http.MethodPost, kz.url("/v1/outbox"), resp, nil)
	if a2.Status != http.StatusAccepted {
		t.Fatalf("answer: %d %s", a2.Status, a2.Body)
	}
	if st := finalStatus(t, kz, a2.json(t)["status_url"].(string)); st["status"] != "accepted" {
		t.Fatalf("answer status %v", st)
	}

	// UNICEF's system reads it from its edge's local inbox, and acknowledges it.
	var got []map[string]any
	waitFor(t, 30*time.Second, "the answer in UNICEF's local inbox", func() bool {
		var l struct {
			Deliveries []map[string]any `json:"deliveries"`
		}
		a := call(t, http.MethodGet, unicef.url("/v1/inbox"), nil, nil)
		if a.Status != http.StatusOK || json.Unmarshal(a.Body, &l) != nil {
			t.Fatalf("inbox: %d %s", a.Status, a.Body)
		}
		got = l.Deliveries
		return len(got) > 0
	})
	msg := got[0]["message"].(map[string]any)
	if len(got) != 1 || msg["in_reply_to"] != id || msg["record"].(map[string]any)["outcome"] != "match" || got[0]["provenance"] == nil {
		t.Fatalf("UNICEF inbox: %v", got)
	}
	did := got[0]["delivery_id"].(string)
	// Offered again until acknowledged.
	if a := call(t, http.MethodGet, unicef.url("/v1/inbox"), nil, nil); !strings.Contains(string(a.Body), did) {
		t.Fatalf("unacknowledged delivery not offered again: %s", a.Body)
	}
	if a := call(t, http.MethodPost, unicef.url("/v1/inbox/"+did+"/ack"), nil, nil); a.Status != http.StatusNoContent {
		t.Fatalf("ack: %d %s", a.Status, a.Body)
	}
	if a := call(t, http.MethodPost, unicef.url("/v1/inbox/"+did+"/ack"), nil, nil); a.Status != http.StatusNotFound {
		t.Fatalf("second ack: %d %s", a.Status, a.Body)
	}
	if a := call(t, http.MethodGet, unicef.url("/v1/inbox"), nil, nil); strings.Contains(string(a.Body), did) {
		t.Fatalf("acknowledged delivery offered again: %s", a.Body)
	}

	// Each edge's evidence: a verifying chain with what left and what arrived.
	unicef.stop()
	kz.stop()
	for _, c := range []struct {
		r     *running
		id    string
		kinds []string
	}{
		{unicef, "UN-UNICEF", []string{audit.KindQueued, audit.KindSent, audit.KindAccepted, audit.KindReceived, audit.KindHandedOver}},
		{kz, "KZ-MJ", []string{audit.KindReceived, audit.KindHandedOver, audit.KindQueued, audit.KindSent, audit.KindAccepted}},
	} {
		kinds := auditKinds(t, hub.PKI, c.r.cfg.StorePath(), c.id)
		for _, k := range c.kinds {
			if !strings.Contains(kinds, k) {
				t.Errorf("%s audit lacks %s: %s", c.id, k, kinds)
			}
		}
	}
	for _, r := range []*running{unicef, kz} {
		assertNoCanary(t, r.cfg.Participant, r.logs.String(), "CANARYPRIMARY", "CANARYSECOND", subject["birth_date"].(string), subject["ref"].(string))
	}
}

// auditKinds verifies an edge's chain (links and its shutdown checkpoint,
// signed with the participant's key) and lists its kinds in order.
func auditKinds(t *testing.T, pkiDir, storePath, id string) string {
	t.Helper()
	st, err := edge.OpenStore(storePath, "edge-"+id, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := envelope.LoadPublicJWK(filepath.Join(pkiDir, id, "sign.pub.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyLive(context.Background(), st, audit.KeyFunc(pub))
	if err != nil {
		t.Fatalf("%s audit: %v", id, err)
	}
	if rs, ok := sum.Replica("edge-" + id); !ok || rs.Checkpoints == 0 {
		t.Errorf("%s audit: no signed checkpoint: %+v", id, sum)
	}
	var kinds []string
	_ = st.Entries(context.Background(), "edge-"+id, 1, func(e audit.Entry) error {
		kinds = append(kinds, e.Kind)
		return nil
	})
	return strings.Join(kinds, ",")
}

// freeAddr is a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// What the edge refuses itself, before anything is queued, with the codes
// the hub would answer; and a refusal by the hub, whose rule ids the
// sender's system reads at the status_url.
func TestEdgeRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and an edge")
	}
	hub := gatewaytest.Start(t)
	unicef := startEdge(t, hub.PKI, hub.URL(), "UN-UNICEF", "local", nil, edge.Options{})
	subject := gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")
	with := func(k string, v any) map[string]any {
		m := verificationRequest(subject)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{"from is the edge's", with("from", "UN-UNICEF"), "", 422, "invalid_message"},
		{"id is the edge's", with("id", "3f1c2a90-0000-4000-8000-00000000ffff"), "", 422, "invalid_message"},
		{"iat is the edge's", with("iat", 1), "", 422, "invalid_message"},
		{"unlisted field", with("note", "x"), "", 422, "invalid_message"},
		{"no subject", with("subject", nil), "", 422, "invalid_message"},
		{"exp passed", with("exp", 1000), "", 422, "invalid_message"},
		{"exp beyond an hour", with("exp", time.Now().Unix()+7200), "", 422, "invalid_message"},
		{"to itself", with("to", "UN-UNICEF"), "", 422, "invalid_message"},
		{"not JSON", []byte(`{"to": `), "", 422, "invalid_message"},
		{"duplicate member", []byte(`{"to":"KZ-MJ","to":"KZ-MVD"}`), "", 422, "invalid_message"},
		{"not an object", []byte(`[1]`), "", 422, "invalid_message"},
		{"unregistered recipient", with("to", "ZZ-NOBODY"), "", 403, "unknown_participant"},
		{"purpose outside the catalogue", with("purpose", "curiosity"), "", 403, "policy_denied"},
		{"not JSON media type", verificationRequest(subject), "text/plain", 415, "unsupported_media_type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.ctype != "" {
				hdr["Content-Type"] = c.ctype
			}
			a := call(t, http.MethodPost, unicef.url("/v1/outbox"), c.body, hdr)
			if a.Status != c.status || a.Header.Get("Content-Type") != "application/problem+json" || a.json(t)["code"] != c.code {
				t.Fatalf("got %d %s, want %d %s", a.Status, a.Body, c.status, c.code)
			}
		})
	}
	if a := call(t, http.MethodGet, unicef.url("/v1/outbox/3f1c2a90-0000-4000-8000-00000000ffff"), nil, nil); a.Status != 404 || a.json(t)["code"] != "not_found" {
		t.Errorf("unknown message: %d %s", a.Status, a.Body)
	}
	if a := call(t, http.MethodGet, unicef.url("/v1/nothing"), nil, nil); a.Status != 404 || a.json(t)["code"] != "not_found" {
		t.Errorf("unknown path: %d %s", a.Status, a.Body)
	}
	if a := call(t, http.MethodDelete, unicef.url("/v1/outbox"), nil, nil); a.Status != 405 || a.json(t)["code"] != "method_not_allowed" {
		t.Errorf("DELETE: %d %s", a.Status, a.Body)
	}
	if a := call(t, http.MethodPost, unicef.url("/v1/outbox"), verificationRequest(subject), map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}); a.Status != 400 || a.json(t)["code"] != "invalid_idempotency_key" {
		t.Errorf("long key: %d %s", a.Status, a.Body)
	}
	if n := strings.Count(unicef.logs.String(), `"msg":"message queued"`); n != 0 {
		t.Fatalf("%d refused messages were queued", n)
	}

	// The hub refuses by its policy (UNICEF may not send for prosecution
	// evidence): the sender's system reads the hub's problem document.
	a := call(t, http.MethodPost, unicef.url("/v1/outbox"), with("purpose", "prosecution-evidence"), nil)
	if a.Status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", a.Status, a.Body)
	}
	st := finalStatus(t, unicef, a.json(t)["status_url"].(string))
	p, _ := st["problem"].(map[string]any)
	if st["status"] != "refused" || p == nil || p["code"] != "policy_denied" || p["decision_id"] == "" {
		t.Fatalf("status %v", st)
	}
	rules := []string{}
	for _, r := range p["reasons"].([]any) {
		rules = append(rules, r.(map[string]any)["rule"].(string))
	}
	if !strings.Contains(strings.Join(rules, ","), "R2") {
		t.Errorf("the hub's rule ids are not shown: %v", p)
	}
	assertNoCanary(t, "UN-UNICEF", unicef.logs.String(), "CANARYPRIMARY", "CANARYSECOND", subject["birth_date"].(string))
}

// Hub down: the edge takes messages (202), /readyz says why it is not
// ready, a message whose exp passes is expired and never sent, and once the
// hub is up everything else flows.
func TestEdgeHubDown(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for an exp to pass and for a hub to start")
	}
	hubAddr := freeAddr(t)
	pkiDir, hubCfg := gatewaytest.Config(t, pki.DemoFederation(), func(c *config.Config) { c.Listen = hubAddr })
	unicef := startEdge(t, pkiDir, "https://"+hubAddr, "UN-UNICEF", "local", nil,
		edge.Options{HubFresh: 2 * time.Second, Poll: 50 * time.Millisecond, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})

	subject := gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")
	queued := call(t, http.MethodPost, unicef.url("/v1/outbox"), verificationRequest(subject), nil)
	short := verificationRequest(subject)
	short["exp"] = time.Now().Unix() + 2
	doomed := call(t, http.MethodPost, unicef.url("/v1/outbox"), short, nil)
	if queued.Status != http.StatusAccepted || doomed.Status != http.StatusAccepted {
		t.Fatalf("while the hub is down: %d %s / %d %s", queued.Status, queued.Body, doomed.Status, doomed.Body)
	}
	r := call(t, http.MethodGet, unicef.ops("/readyz"), nil, nil)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.json(t)["detail"].(string), "hub") {
		t.Fatalf("readyz with the hub down: %d %s", r.Status, r.Body)
	}
	t.Logf("readyz while the hub is down: %s", r.Body)
	if m := call(t, http.MethodGet, unicef.ops("/metrics"), nil, nil); !strings.Contains(string(m.Body), "xborder_edge_outbox_depth 2") {
		t.Errorf("metrics: %s", m.Body)
	}

	doomedID := doomed.json(t)["id"].(string)
	st := finalStatus(t, unicef, "/v1/outbox/"+doomedID)
	if st["status"] != "expired" {
		t.Fatalf("doomed: %v", st)
	}
	if q := call(t, http.MethodGet, unicef.url(queued.json(t)["status_url"].(string)), nil, nil).json(t); q["status"] != "queued" {
		t.Fatalf("the other message: %v", q)
	}

	hub := gatewaytest.StartWith(t, pkiDir, hubCfg)
	if st := finalStatus(t, unicef, queued.json(t)["status_url"].(string)); st["status"] != "accepted" {
		t.Fatalf("after the hub came up: %v", st)
	}
	waitFor(t, 10*time.Second, "readyz 200", func() bool {
		return call(t, http.MethodGet, unicef.ops("/readyz"), nil, nil).Status == http.StatusOK
	})
	// The expired one never reached the hub.
	if a, err := hub.Client("UN-UNICEF").Do(context.Background(), http.MethodGet, "/v1/messages/"+doomedID, "", nil); err != nil || a.Status != http.StatusNotFound {
		t.Fatalf("the hub knows the expired message: %v %d %s", err, a.Status, a.Body)
	}
	if st := call(t, http.MethodGet, unicef.url("/v1/outbox/"+doomedID), nil, nil).json(t); st["status"] != "expired" || st["attempts"] != float64(0) {
		t.Fatalf("expired message afterwards: %v", st)
	}
	// The hub goes down again once its keys are known: refused
	// connections are no sends, and the message expires unsent.
	hub.Stop()
	short["exp"] = time.Now().Unix() + 2
	late := call(t, http.MethodPost, unicef.url("/v1/outbox"), short, nil)
	if late.Status != http.StatusAccepted {
		t.Fatalf("second doomed: %d %s", late.Status, late.Body)
	}
	if st := finalStatus(t, unicef, late.json(t)["status_url"].(string)); st["status"] != "expired" || st["attempts"] != float64(0) {
		t.Fatalf("expired with the hub's keys known: %v", st)
	}
	unicef.stop()
	if kinds := auditKinds(t, pkiDir, unicef.cfg.StorePath(), "UN-UNICEF"); !strings.Contains(kinds, audit.KindExpired) {
		t.Errorf("no expired entry: %s", kinds)
	}
	assertNoCanary(t, "UN-UNICEF", unicef.logs.String(), "CANARYPRIMARY", "CANARYSECOND", subject["birth_date"].(string))
}

// A delivery that fails the edge's checks is quarantined, audited and
// counted, never handed over, and acknowledged to the hub. Here the
// registry's copy at the registry edge names another signing key for UNICEF
// than the one the hub verified (a stale or tampered copy): the provenance
// does not match it.
func TestEdgeQuarantine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and an edge and waits for a delivery")
	}
	hub := gatewaytest.Start(t)
	raw, err := os.ReadFile(filepath.Join(hub.PKI, pki.RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	var f trust.File
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	other, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := json.Marshal(other.Public())
	if err := os.WriteFile(filepath.Join(hub.PKI, "other.pub.jwk"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range f.Participants {
		if f.Participants[i].ID == "UN-UNICEF" {
			f.Participants[i].SigningKeys = []string{"other.pub.jwk"}
		}
	}
	stale, _ := yaml.Marshal(f)
	if err := os.WriteFile(filepath.Join(hub.PKI, "stale-registry.yaml"), stale, 0o600); err != nil {
		t.Fatal(err)
	}
	drop := filepath.Join(t.TempDir(), "drop")
	kz := startEdge(t, hub.PKI, hub.URL(), "KZ-MJ", "file:"+drop,
		func(c *config.Edge) { c.Registry = filepath.Join(hub.PKI, "stale-registry.yaml") }, edge.Options{Poll: 50 * time.Millisecond})

	unicef := hub.Client("UN-UNICEF")
	msg := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"),
		"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	if r, err := unicef.Send(context.Background(), msg); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %d %s", err, r.Status, r.Body)
	}
	waitFor(t, 30*time.Second, "the quarantine", func() bool {
		return strings.Contains(string(call(t, http.MethodGet, kz.ops("/metrics"), nil, nil).Body), "xborder_edge_quarantined 1")
	})
	// Acknowledged to the hub: the message is delivered there.
	waitFor(t, 10*time.Second, "the hub's delivered status", func() bool {
		r, err := unicef.Do(context.Background(), http.MethodGet, "/v1/messages/"+msg["id"].(string), "", nil)
		return err == nil && strings.Contains(string(r.Body), `"delivered"`)
	})
	if m, _ := filepath.Glob(filepath.Join(drop, "*")); len(m) != 0 {
		t.Fatalf("a quarantined delivery was handed over: %v", m)
	}
	if !strings.Contains(kz.logs.String(), "provenance.sender_kid is not a signing key of the sender") {
		t.Errorf("the reason was not logged:\n%s", kz.logs.String())
	}
	kz.stop()
	kinds := auditKinds(t, hub.PKI, kz.cfg.StorePath(), "KZ-MJ")
	if kinds != "quarantined" {
		t.Errorf("audit kinds %s, want quarantined only", kinds)
	}
	assertNoCanary(t, "KZ-MJ", kz.logs.String(), "CANARYPRIMARY", "CANARYSECOND")
}

// deliver: https://… POSTs the hand-over as JSON with the delivery id as
// Idempotency-Key and the participant's client certificate; a failed
// hand-over is not acknowledged to the hub, which offers it again.
func TestEdgeHTTPSHandOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub, an edge and a local receiver, and waits for a redelivery")
	}
	hub := gatewaytest.Start(t, func(c *config.Config) { c.InboxVisibility = time.Second })
	// The local system's server certificate: any the edge trusts; here one
	// issued by the development CA (the hub's own, for 127.0.0.1).
	cert, err := tls.LoadX509KeyPair(filepath.Join(hub.PKI, "gateway", "tls.crt"), filepath.Join(hub.PKI, "gateway", "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		ctype, key, client string
		body               []byte
	}
	calls := make(chan got, 10)
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cn := ""
		if len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		calls <- got{r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), cn, b}
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the local system is busy once
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()

	kz := startEdge(t, hub.PKI, hub.URL(), "KZ-MJ", srv.URL+"/incoming", nil, edge.Options{Poll: 50 * time.Millisecond})
	unicef := hub.Client("UN-UNICEF")
	msg := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"),
		"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	if r, err := unicef.Send(context.Background(), msg); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %d %s", err, r.Status, r.Body)
	}
	var first, second got
	for i, g := range []*got{&first, &second} {
		select {
		case *g = <-calls:
		case <-time.After(30 * time.Second):
			t.Fatalf("hand-over %d did not come", i+1)
		}
	}
	var doc edge.HandOver
	if err := json.Unmarshal(second.body, &doc); err != nil {
		t.Fatal(err)
	}
	if second.ctype != "application/json" || second.key != doc.DeliveryID || second.client != "KZ-MJ" || doc.Message["id"] != msg["id"] ||
		!bytes.Equal(first.body, second.body) {
		t.Fatalf("hand-over: %+v / %s", second, second.body)
	}
	waitFor(t, 10*time.Second, "the hub's delivered status", func() bool {
		r, err := unicef.Do(context.Background(), http.MethodGet, "/v1/messages/"+msg["id"].(string), "", nil)
		return err == nil && strings.Contains(string(r.Body), `"delivered"`)
	})
	m := string(call(t, http.MethodGet, kz.ops("/metrics"), nil, nil).Body)
	if !strings.Contains(m, "xborder_edge_handovers_total 1") || !strings.Contains(m, "xborder_edge_handover_failures_total 1") {
		t.Errorf("metrics:\n%s", m)
	}
	assertNoCanary(t, "KZ-MJ", kz.logs.String(), "CANARYPRIMARY", "CANARYSECOND")
}

// The hub rotates its keys and retires the encryption key the edge had
// read: a message the edge sealed to it is refused (decryption_failed), and
// the edge seals the same signed message to the hub's current key and
// sends it again; the new receipt (signed with the new key) verifies.
func TestEdgeHubKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a hub twice")
	}
	hubAddr := freeAddr(t)
	pkiDir, hubCfg := gatewaytest.Config(t, pki.DemoFederation(), func(c *config.Config) { c.Listen = hubAddr })
	hub := gatewaytest.StartWith(t, pkiDir, hubCfg)
	unicef := startEdge(t, pkiDir, hub.URL(), "UN-UNICEF", "local", nil,
		edge.Options{Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	subject := gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")
	first := call(t, http.MethodPost, unicef.url("/v1/outbox"), verificationRequest(subject), nil)
	if st := finalStatus(t, unicef, first.json(t)["status_url"].(string)); st["status"] != "accepted" {
		t.Fatalf("before the rotation: %v", st)
	}
	hub.Stop()
	gw := filepath.Join(pkiDir, "gateway")
	_, oldEnc, err := pki.RotateGateway(gw)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.RetireEncryption(gw, oldEnc); err != nil {
		t.Fatal(err)
	}
	gatewaytest.StartWith(t, pkiDir, hubCfg)
	a := call(t, http.MethodPost, unicef.url("/v1/outbox"), verificationRequest(subject), nil)
	st := finalStatus(t, unicef, a.json(t)["status_url"].(string))
	if st["status"] != "accepted" || st["attempts"] != float64(2) {
		t.Fatalf("after the rotation: %v", st)
	}
	if !strings.Contains(unicef.logs.String(), "sealing the same signed message to its current key") {
		t.Error("the edge did not seal again")
	}
}

// An Idempotency-Key is kept 24 hours and more (a repeat gets the same
// message), then purged with an audit entry naming its message; after the
// purge the same key and body make a new message.
func TestEdgeIdempotencyKeyPurge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an edge and waits for its purge")
	}
	var offset atomic.Int64 // the edge's clock runs ahead by this
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	// No hub listens: the messages stay queued; the keys are the edge's alone.
	unicef := startEdge(t, pkiDir, "https://"+freeAddr(t), "UN-UNICEF", "local", nil,
		edge.Options{Now: now, PurgeEvery: 20 * time.Millisecond})
	body := verificationRequest(gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"))
	key := map[string]string{"Idempotency-Key": "purge-1"}
	first := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, key)
	if first.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	id := first.json(t)["id"]
	offset.Store(int64(24*time.Hour + 30*time.Minute))
	time.Sleep(100 * time.Millisecond) // several purge passes at 24 h 30 min: the key must survive them
	if a := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, key); a.Status != http.StatusOK || a.json(t)["id"] != id {
		t.Fatalf("repeat after 24 h 30 min: %d %s", a.Status, a.Body)
	}
	offset.Store(int64(edge.IdemRetention + time.Minute))
	waitFor(t, 10*time.Second, "the purge", func() bool {
		return strings.Contains(unicef.logs.String(), `"msg":"idempotency keys purged"`)
	})
	again := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, key)
	if again.Status != http.StatusAccepted || again.json(t)["id"] == id {
		t.Fatalf("after the purge: %d %s (first id %v)", again.Status, again.Body, id)
	}
	unicef.stop()
	if kinds := auditKinds(t, pkiDir, unicef.cfg.StorePath(), "UN-UNICEF"); !strings.Contains(kinds, audit.KindPurged) {
		t.Errorf("no purged entry: %s", kinds)
	}
	assertNoCanary(t, "UN-UNICEF", unicef.logs.String(), "CANARYPRIMARY", "CANARYSECOND", "purge-1")
}

// The edge reloads its registry when its files change, as the hub does: a
// recipient suspended there is refused at POST from then on; a registry
// that does not load is refused (audited) and the one in force keeps
// serving.
func TestEdgeRegistryReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an edge and waits for registry reloads")
	}
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	regPath := filepath.Join(pkiDir, pki.RegistryFile)
	// No hub listens: what is checked here is decided before anything is queued.
	unicef := startEdge(t, pkiDir, "https://"+freeAddr(t), "UN-UNICEF", "local", nil, edge.Options{PolicyWatch: 20 * time.Millisecond})
	body := verificationRequest(gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"))
	if a := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, nil); a.Status != http.StatusAccepted {
		t.Fatalf("before: %d %s", a.Status, a.Body)
	}
	raw, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	var f trust.File
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for i := range f.Participants {
		if f.Participants[i].ID == "KZ-MJ" {
			f.Participants[i].Suspended = true
		}
	}
	suspended, _ := yaml.Marshal(f)
	if err := os.WriteFile(regPath, suspended, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload", func() bool {
		return strings.Contains(unicef.logs.String(), `"msg":"registry reloaded"`)
	})
	a := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, nil)
	if a.Status != http.StatusForbidden || a.json(t)["code"] != "unknown_participant" {
		t.Fatalf("to a suspended recipient: %d %s", a.Status, a.Body)
	}
	if err := os.WriteFile(regPath, []byte("participants: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the refusal", func() bool {
		return strings.Contains(unicef.logs.String(), `"msg":"registry change refused; the previous registry keeps serving"`)
	})
	if a := call(t, http.MethodPost, unicef.url("/v1/outbox"), body, nil); a.Status != http.StatusForbidden {
		t.Fatalf("after a refused change: %d %s", a.Status, a.Body)
	}
	unicef.stop()
	kinds := auditKinds(t, pkiDir, unicef.cfg.StorePath(), "UN-UNICEF")
	if !strings.Contains(kinds, audit.KindRegistryReloaded) || !strings.Contains(kinds, audit.KindRegistryRefused) {
		t.Errorf("audit kinds %s", kinds)
	}
}

// A finished message's record and receipt are kept for the edge's
// retention, counted from its final answer, then purged (GET answers 404,
// a forgotten entry names it, the metric counts it).
func TestEdgeRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and an edge and waits for a purge")
	}
	var offset atomic.Int64 // the edge's clock runs ahead by this
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	hub := gatewaytest.Start(t)
	unicef := startEdge(t, hub.PKI, hub.URL(), "UN-UNICEF", "local", func(c *config.Edge) { c.Retention = "48h" },
		edge.Options{Now: now, PurgeEvery: 20 * time.Millisecond})
	a := call(t, http.MethodPost, unicef.url("/v1/outbox"), verificationRequest(gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND")), nil)
	if a.Status != http.StatusAccepted {
		t.Fatalf("post: %d %s", a.Status, a.Body)
	}
	statusURL := a.json(t)["status_url"].(string)
	if doc := finalStatus(t, unicef, statusURL); doc["status"] != "accepted" || doc["receipt"] == nil {
		t.Fatalf("final: %v", doc)
	}
	offset.Store(int64(47 * time.Hour))
	time.Sleep(100 * time.Millisecond) // several purge passes within the retention: the record must survive them
	if g := call(t, http.MethodGet, unicef.url(statusURL), nil, nil); g.Status != http.StatusOK || g.json(t)["receipt"] == nil {
		t.Fatalf("within the retention: %d %s", g.Status, g.Body)
	}
	offset.Store(int64(48*time.Hour + time.Minute))
	waitFor(t, 10*time.Second, "the purge", func() bool {
		return strings.Contains(unicef.logs.String(), `"msg":"records past retention purged"`)
	})
	if g := call(t, http.MethodGet, unicef.url(statusURL), nil, nil); g.Status != http.StatusNotFound {
		t.Fatalf("after the retention: %d %s, want 404", g.Status, g.Body)
	}
	if m := call(t, http.MethodGet, unicef.ops("/metrics"), nil, nil); !strings.Contains(string(m.Body), "xborder_edge_retention_purged_total 1\n") {
		t.Errorf("metrics:\n%s", m.Body)
	}
	unicef.stop()
	if kinds := auditKinds(t, hub.PKI, unicef.cfg.StorePath(), "UN-UNICEF"); !strings.Contains(kinds, audit.KindForgotten) {
		t.Errorf("no forgotten entry: %s", kinds)
	}
}

// deliver: https://…: the hand-over trusts the registry's trust anchors as
// they are now, not as they were at start. A local system whose
// certificate authority is not (yet) an anchor gets nothing; once the
// registry lists it, the edge reloads the registry and the hand-over
// reaches it, without a restart.
func TestEdgeHTTPSAnchorsReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub, an edge and a local receiver, and waits for a registry reload and a redelivery")
	}
	hub := gatewaytest.Start(t, func(c *config.Config) { c.InboxVisibility = time.Second })
	caPEM, serverCert := localCA(t)
	calls := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- r.Header.Get("Idempotency-Key")
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	srv.StartTLS()
	defer srv.Close()

	kz := startEdge(t, hub.PKI, hub.URL(), "KZ-MJ", srv.URL+"/incoming", nil,
		edge.Options{Poll: 50 * time.Millisecond, PolicyWatch: 20 * time.Millisecond})
	msg := gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYPRIMARY", "CANARYSECOND"),
		"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
	})
	if r, err := hub.Client("UN-UNICEF").Send(context.Background(), msg); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %d %s", err, r.Status, r.Body)
	}
	waitFor(t, 30*time.Second, "a failed hand-over (unknown certificate authority)", func() bool {
		return strings.Contains(string(call(t, http.MethodGet, kz.ops("/metrics"), nil, nil).Body), "xborder_edge_handover_failures_total 1")
	})
	if len(calls) != 0 {
		t.Fatal("the local system was reached through a certificate the edge does not trust")
	}

	regPath := filepath.Join(hub.PKI, pki.RegistryFile)
	caPath := filepath.Join(hub.PKI, "local-ca.pem")
	if err := os.WriteFile(caPath, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	var f trust.File
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	f.TrustAnchors = append(f.TrustAnchors, caPath)
	edited, _ := yaml.Marshal(f)
	if err := os.WriteFile(regPath, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the registry reload", func() bool {
		return strings.Contains(kz.logs.String(), `"msg":"registry reloaded"`)
	})
	select {
	case key := <-calls:
		if !envelope.IsUUID(key) {
			t.Errorf("hand-over Idempotency-Key %q, want the delivery id", key)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no hand-over after the local system's certificate authority became a trust anchor")
	}
	waitFor(t, 10*time.Second, "the hand-over counted", func() bool {
		return strings.Contains(string(call(t, http.MethodGet, kz.ops("/metrics"), nil, nil).Body), "xborder_edge_handovers_total 1")
	})
}

// localCA makes a certificate authority (PEM) and a server certificate it
// issued for 127.0.0.1: a participant's own system, not the federation's.
func localCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "KZ-MJ local systems CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "civil-registry.local"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// pprof: true serves /debug/pprof/ on the operator listener, with the
// operator token only; without it the path does not exist.
func TestEdgePprof(t *testing.T) {
	pkiDir, _ := gatewaytest.Config(t, pki.DemoFederation())
	tokenFile := filepath.Join(pkiDir, pki.OpsTokenFile)
	token, err := pki.ReadOpsToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	off := startEdge(t, pkiDir, "https://"+freeAddr(t), "UN-UNICEF", "local", func(c *config.Edge) { c.OpsTokenFile = tokenFile }, edge.Options{})
	bearer := map[string]string{"Authorization": "Bearer " + string(token)}
	if a := call(t, http.MethodGet, off.ops("/debug/pprof/goroutine?debug=1"), nil, bearer); a.Status != http.StatusNotFound {
		t.Errorf("pprof not configured: %d, want 404", a.Status)
	}
	off.stop()
	on := startEdge(t, pkiDir, "https://"+freeAddr(t), "UN-UNICEF", "local", func(c *config.Edge) {
		c.OpsTokenFile, c.Pprof = tokenFile, "true"
	}, edge.Options{})
	if a := call(t, http.MethodGet, on.ops("/debug/pprof/goroutine?debug=1"), nil, nil); a.Status != http.StatusUnauthorized {
		t.Errorf("pprof without the operator token: %d, want 401", a.Status)
	}
	if a := call(t, http.MethodGet, on.ops("/debug/pprof/goroutine?debug=1"), nil, bearer); a.Status != http.StatusOK {
		t.Errorf("pprof with the operator token: %d %s", a.Status, a.Body)
	}
}
