package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

// Issue 13.4, end to end on both stores, with the gateway's clock: a
// message is remembered after its exp while its retention period runs (a
// retry still gets its original answer), then forgotten with its payloads
// (GET answers 404), and a retry of it after that is refused as expired,
// never accepted a second time. A denial is forgotten at the end of its
// own retention period. The audit chain keeps every step and verifies.
func TestForgottenAfterExpAndRetention(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			clock := &gatewaytest.Clock{}
			var opts []gatewaytest.Option
			if backend == "redis" {
				opts = append(opts, gatewaytest.Redis(t))
			}
			env := gatewaytest.StartClock(t, clock, opts...)
			unicef, mj := env.Client("UN-UNICEF"), env.Client("KZ-MJ")
			_, gwEnc, err := unicef.GatewayKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Each message is signed once; every post is a new JWE around
			// the same inner JWS (a sender's retry).
			signed := func(msg map[string]any) func() *client.Response {
				msg["iat"], msg["exp"] = clock.Now().Unix(), clock.Now().Unix()+600
				b, _ := json.Marshal(msg)
				jws, err := envelope.Sign(b, unicef.Me.Signing, envelope.TypMessage)
				if err != nil {
					t.Fatal(err)
				}
				return func() *client.Response {
					t.Helper()
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
			}
			getStatus := func(c *client.Client, id string) int {
				t.Helper()
				r, err := c.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				return r.Status
			}

			verify := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")) // retained 90 days
			id := verify["id"].(string)
			post := signed(verify)
			first := post()
			if first.Status != http.StatusAccepted {
				t.Fatalf("first: %d %s", first.Status, first.Body)
			}
			denied := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))
			denied["purpose"] = "border-screening" // R6 about a child: denied, retained 30 days
			deniedID := denied["id"].(string)
			postDenied := signed(denied)
			if r := postDenied(); r.Status != http.StatusForbidden {
				t.Fatalf("denial: %d %s", r.Status, r.Body)
			}

			// Past exp, within the retention period: remembered.
			clock.Advance(601 * time.Second)
			if ps, err := env.Gateway.Purge(ctx, clock.Now()); err != nil || len(ps) != 0 {
				t.Fatalf("purge past exp: %+v %v, want nothing", ps, err)
			}
			if r := post(); r.Status != http.StatusOK || !bytes.Equal(r.Body, first.Body) {
				t.Fatalf("retry past exp: %d %s, want 200 and the original answer", r.Status, r.Body)
			}
			if st := getStatus(unicef, id); st != http.StatusOK {
				t.Fatalf("status past exp: %d", st)
			}

			// 31 days: the denial is forgotten; the acceptance is not.
			clock.Advance(31 * 24 * time.Hour)
			ps, err := env.Gateway.Purge(ctx, clock.Now())
			if err != nil || len(ps) != 1 || ps[0].ID != deniedID || !ps[0].Forgotten || ps[0].Payloads {
				t.Fatalf("purge at 31 days: %+v %v, want the denial forgotten", ps, err)
			}
			if st := getStatus(unicef, deniedID); st != http.StatusNotFound {
				t.Errorf("status of the forgotten denial: %d", st)
			}
			if r := postDenied(); r.Status != http.StatusUnprocessableEntity || r.Problem().Detail != "expired" {
				t.Errorf("retry of the forgotten denial: %d %s, want 422 expired", r.Status, r.Body)
			}

			// 91 days: the acceptance's payload and metadata go together.
			clock.Advance(60 * 24 * time.Hour)
			ps, err = env.Gateway.Purge(ctx, clock.Now())
			if err != nil || len(ps) != 1 || ps[0].ID != id || !ps[0].Payloads || !ps[0].Forgotten || ps[0].Deliveries != 1 {
				t.Fatalf("purge at 91 days: %+v %v, want the acceptance purged and forgotten", ps, err)
			}
			for name, c := range map[string]*client.Client{"sender": unicef, "recipient": mj} {
				if st := getStatus(c, id); st != http.StatusNotFound {
					t.Errorf("status for the %s of a forgotten message: %d, want 404", name, st)
				}
			}
			if ds, err := mj.Inbox(ctx, 10); err != nil || len(ds) != 0 {
				t.Errorf("inbox after the purge: %v %d", err, len(ds))
			}
			// A retry now is a new message to the gateway, and an expired one.
			if r := post(); r.Status != http.StatusUnprocessableEntity || r.Problem().Detail != "expired" {
				t.Fatalf("retry of a forgotten message: %d %s, want 422 expired", r.Status, r.Body)
			}

			keys, _, err := unicef.GatewayKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := audit.VerifyLive(ctx, env.Gateway.Store, audit.KeyFunc(keys...)); err != nil {
				t.Fatalf("audit chain: %v", err)
			}
			kinds := map[string][]string{}
			replicas, err := env.Gateway.Store.Replicas(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, rp := range replicas {
				err := env.Gateway.Store.Entries(ctx, rp, 1, func(e audit.Entry) error {
					if e.MessageID == id || e.MessageID == deniedID {
						kinds[e.MessageID] = append(kinds[e.MessageID], e.Kind)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if got, want := kinds[id], []string{"accepted", "purged", "forgotten"}; !slices.Equal(got, want) {
				t.Errorf("entries of the acceptance: %v, want %v (accepted once)", got, want)
			}
			if got, want := kinds[deniedID], []string{"denied", "forgotten"}; !slices.Equal(got, want) {
				t.Errorf("entries of the denial: %v, want %v", got, want)
			}
		})
	}
}
