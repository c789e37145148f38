package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

// pushRecipient is UN-IOM's own HTTPS endpoint: mTLS with the gateway's
// certificate, decrypting and verifying each delivery.
type pushRecipient struct {
	failing atomic.Bool
	calls   atomic.Int32
	mu      sync.Mutex
	got     map[string]string // delivery_id → message id
	keys    []string          // Idempotency-Keys seen
}

func adultReferralToIOM() map[string]any {
	now := time.Now()
	return gatewaytest.Message("KZ-MTSZN", "UN-IOM", "referral", "rehabilitation-referral", map[string]any{
		"subject": map[string]any{"ref": "S-ADULT", "names": map[string]any{"primary": "CANARYADULT"},
			"birth_date": "1990-01-01", "birth_date_basis": "document", "sex": "F"},
		"record": map[string]any{"service_type": "livelihood", "priority": "medium", "needs": []string{"vocational-training"}},
		"consent": map[string]any{"id": "C-IOM", "basis": "consent", "given_by": "subject", "child_assent": "n/a",
			"recipients": []string{"UN-IOM"}, "purposes": []string{"rehabilitation-referral"},
			"obtained_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
			"expires_at":  now.Add(24 * time.Hour).UTC().Format(time.RFC3339)},
	})
}

// Push delivery end to end: retried while the recipient fails, dead-lettered
// after the configured attempts (visible to the sender), re-queued by an
// operator, then delivered once the recipient is back.
func TestPushDeliveryRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	specs := pki.DemoFederation()
	for i := range specs {
		if specs[i].ID == "UN-IOM" {
			specs[i].Delivery = trust.Delivery{Adapter: trust.AdapterHTTPS, URL: "https://" + ln.Addr().String() + "/v1/deliveries", AllowPrivate: true}
		}
	}
	env := gatewaytest.StartFederation(t, specs, func(c *config.Config) {
		c.DeliveryAttempts = 3
		c.DeliveryBackoff = 50 * time.Millisecond
		c.DeliveryMaxBackoff = 100 * time.Millisecond
		c.DeliveryTimeout = 2 * time.Second
	})
	iom := env.Client("UN-IOM")
	rcpt := &pushRecipient{got: map[string]string{}}
	gwSign, err := envelope.LoadPublicJWK(filepath.Join(env.PKI, "gateway", "sign.pub.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(env.PKI, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srv := &http.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{iom.Me.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rcpt.calls.Add(1)
			if rcpt.failing.Load() {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			if r.TLS.PeerCertificates[0].Subject.CommonName != pki.GatewayCN || r.Header.Get("Content-Type") != "application/jose" {
				http.Error(w, "who are you", http.StatusForbidden)
				return
			}
			body, _ := io.ReadAll(r.Body)
			jws, err := envelope.Decrypt(body, []*envelope.PrivateKey{iom.Me.Enc}, envelope.Profile{})
			if err != nil {
				http.Error(w, "decrypt", http.StatusBadRequest)
				return
			}
			payload, _, err := envelope.Verify(jws, envelope.TypDelivery, func(kid string) (*envelope.PublicKey, bool) {
				return gwSign, kid == gwSign.KID()
			}, envelope.Profile{})
			if err != nil {
				http.Error(w, "verify", http.StatusBadRequest)
				return
			}
			var d struct {
				DeliveryID string         `json:"delivery_id"`
				Message    map[string]any `json:"message"`
			}
			_ = json.Unmarshal(payload, &d)
			rcpt.mu.Lock()
			rcpt.got[d.DeliveryID], _ = d.Message["id"].(string)
			rcpt.keys = append(rcpt.keys, r.Header.Get("Idempotency-Key"))
			rcpt.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	sender := env.Client("KZ-MTSZN")
	delivered := func(id string) bool {
		rcpt.mu.Lock()
		defer rcpt.mu.Unlock()
		for _, m := range rcpt.got {
			if m == id {
				return true
			}
		}
		return false
	}
	msgStatus := func(id string) string {
		r, err := sender.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("status: %v %v", err, r)
		}
		var st struct {
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
		}
		_ = json.Unmarshal(r.Body, &st)
		return st.Status
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// 1. Delivered at once.
	m1 := adultReferralToIOM()
	if r, err := sender.Send(ctx, m1); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %d %s", err, r.Status, r.Body)
	}
	waitFor("the first push", func() bool { return delivered(m1["id"].(string)) })
	waitFor("status delivered", func() bool { return msgStatus(m1["id"].(string)) == "delivered" })
	rcpt.mu.Lock()
	for id := range rcpt.got {
		if !contains(rcpt.keys, id) {
			t.Errorf("delivery %s came without its Idempotency-Key", id)
		}
	}
	rcpt.mu.Unlock()

	// 2. The recipient fails: retried, then dead-lettered.
	rcpt.failing.Store(true)
	before := rcpt.calls.Load()
	m2 := adultReferralToIOM()
	if r, _ := sender.Send(ctx, m2); r.Status != http.StatusAccepted {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	id2 := m2["id"].(string)
	waitFor("dead_lettered", func() bool { return msgStatus(id2) == "dead_lettered" })
	if n := rcpt.calls.Load() - before; n != 3 {
		t.Errorf("%d attempts before the dead letter, want 3", n)
	}

	// 3. The operator sees it and re-queues it; the recipient is back.
	resp, err := env.Ops(http.MethodGet, "/deadletters", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var list struct {
		DeadLetters []struct {
			DeliveryID string `json:"delivery_id"`
			Recipient  string `json:"recipient"`
			MessageID  string `json:"message_id"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(body, &list); err != nil || len(list.DeadLetters) != 1 || list.DeadLetters[0].MessageID != id2 {
		t.Fatalf("dead letters: %v %s", err, body)
	}
	rcpt.failing.Store(false)
	dl := list.DeadLetters[0]
	requeue := "/deadletters/" + dl.Recipient + "/" + dl.DeliveryID + "/requeue"
	if resp, _ := http.Post(env.OpsURL()+requeue, "", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("requeue without the operator token: %d", resp.StatusCode)
	}
	resp, err = env.Ops(http.MethodPost, requeue, nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("requeue: %v %v", err, resp)
	}
	resp.Body.Close()
	if resp, _ := env.Ops(http.MethodPost, requeue, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second requeue: %d", resp.StatusCode)
	}
	waitFor("delivery after requeue", func() bool { return delivered(id2) })
	waitFor("status delivered after requeue", func() bool { return msgStatus(id2) == "delivered" })

	// The push recipient has no inbox to pull: nothing is left there.
	if ds, err := iom.Inbox(ctx, 10); err != nil || len(ds) != 0 {
		t.Errorf("push recipient's inbox: %v %d", err, len(ds))
	}
	assertNoCanary(t, env.Logs.String(), "CANARYADULT")

	// Each end of a push is on the audit chain: m1 delivered; m2 dead-lettered,
	// then delivered after the requeue.
	env.Stop()
	b, err := gateway.OpenStore(ctx, env.Config, gateway.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ends := map[string][]string{}
	replicas, _ := b.Replicas(ctx)
	for _, rp := range replicas {
		_ = b.Entries(ctx, rp, 0, func(e audit.Entry) error {
			if e.Kind == audit.KindDelivered || e.Kind == audit.KindDeadLettered {
				ends[e.MessageID] = append(ends[e.MessageID], e.Kind)
			}
			return nil
		})
	}
	if got := ends[m1["id"].(string)]; len(got) != 1 || got[0] != "delivered" {
		t.Errorf("audit of the first message's delivery: %v", got)
	}
	if got := ends[id2]; len(got) != 2 || got[0] != "dead_lettered" || got[1] != "delivered" {
		t.Errorf("audit of the second message's delivery: %v", got)
	}
}
