package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/trust"
)

// Each station of the road, alone, on the real stores and keys: what it
// refuses with which code, and what it leaves for the next one.

// stationRig is the property rig on a real embedded store.
func stationRig(t *testing.T) (*rig, *Exchange, store.Store) {
	t.Helper()
	r := newRig(t, nil)
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "x.db"), boltstore.Options{Replica: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	x, err := New(Options{Registry: trust.NewHolder(r.reg), Policy: r.x.o.Policy, Store: st,
		SigningKey: r.x.o.SigningKey, DecryptionKeys: r.x.o.DecryptionKeys,
		Logger: slog.New(slog.DiscardHandler), Audit: hashOnly{}})
	if err != nil {
		t.Fatal(err)
	}
	return r, x, st
}

// seal signs msg as from and encrypts it for the gateway.
func (r *rig) seal(t *testing.T, from string, msg map[string]any) []byte {
	t.Helper()
	key, err := envelope.LoadPrivateJWK(filepath.Join(r.dir, from, "sign.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(msg)
	out, err := envelope.Seal(b, key, envelope.TypMessage, r.x.o.DecryptionKeys[0].Public())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func request(from, to string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"id": uuid.NewString(), "type": "identity.verification.request",
		"from": from, "to": to, "purpose": "identity-verification", "legal_basis": "agreement",
		"iat": now, "exp": now + 300, "subject": map[string]any{"ref": "S-1"},
		"record": map[string]any{"requested_assertions": []string{"identity_match"}}}
}

// code is the stable code of an exchange or envelope error.
func code(err error) string {
	var xe *Error
	if errors.As(err, &xe) {
		return xe.Code
	}
	return string(envelope.CodeOf(err))
}

func TestStationOpenAndIdentify(t *testing.T) {
	r, x, _ := stationRig(t)
	ctx := context.Background()
	cases := []struct {
		name     string
		identity string
		body     func() []byte
		want     string
	}{
		{"not a JWE", "UN-UNICEF", func() []byte { return []byte("not.a.jwe") }, "malformed_envelope"},
		{"valid", "UN-UNICEF", func() []byte { return r.seal(t, "UN-UNICEF", request("UN-UNICEF", "KZ-MJ")) }, ""},
		{"TLS identity is someone else", "UN-IOM", func() []byte { return r.seal(t, "UN-UNICEF", request("UN-UNICEF", "KZ-MJ")) }, CodeIdentityMismatch},
		{"signed by another participant", "UN-UNICEF", func() []byte { return r.seal(t, "UN-IOM", request("UN-UNICEF", "KZ-MJ")) }, CodeIdentityMismatch},
		{"recipient not registered", "UN-UNICEF", func() []byte { return r.seal(t, "UN-UNICEF", request("UN-UNICEF", "XX-NOBODY")) }, CodeUnknownParticipant},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := x.begin(ctx, tc.identity, tc.body())
			if err != nil {
				t.Fatal(err)
			}
			defer s.leave()
			_, err = s.walk(ctx, x.open, x.identify, func(context.Context, *submission) (*Answer, error) {
				return &Answer{Status: 0}, nil // the end of this test's road
			})
			if code(err) != tc.want {
				t.Fatalf("got %q (%v), want %q", code(err), err, tc.want)
			}
			if tc.want == "" && (s.sender == nil || s.recipient == nil || s.msg == nil) {
				t.Error("identify left no parties for the next stations")
			}
		})
	}
}

func TestStationReplayAndTime(t *testing.T) {
	r, x, _ := stationRig(t)
	ctx := context.Background()
	msg := request("UN-UNICEF", "KZ-MJ")
	first, err := x.Submit(ctx, "UN-UNICEF", r.seal(t, "UN-UNICEF", msg))
	if err != nil || first.Status != 202 {
		t.Fatalf("first: %v %+v", err, first)
	}
	// The same signed message again (another JWE around the same JWS)
	// would be a retry; a new signature over the same id is a replay.
	if _, err := x.Submit(ctx, "UN-UNICEF", r.seal(t, "UN-UNICEF", msg)); code(err) != CodeReplay {
		t.Errorf("a different signed message under an accepted id: %v", err)
	}
	late := request("UN-UNICEF", "KZ-MJ")
	late["iat"], late["exp"] = time.Now().Unix()-400, time.Now().Unix()-10
	_, err = x.Submit(ctx, "UN-UNICEF", r.seal(t, "UN-UNICEF", late))
	var ee *envelope.Error
	if !errors.As(err, &ee) || ee.Detail != envelope.DetailExpired {
		t.Errorf("an expired message: %v", err)
	}
}

// prepare finds the request a response answers, from the store, only when
// it went from the response's recipient to its sender.
func TestStationPrepare(t *testing.T) {
	r, x, _ := stationRig(t)
	ctx := context.Background()
	req := request("UN-UNICEF", "KZ-MJ")
	if a, err := x.Submit(ctx, "UN-UNICEF", r.seal(t, "UN-UNICEF", req)); err != nil || a.Status != 202 {
		t.Fatalf("request: %v", err)
	}
	answer := func(from string) map[string]any {
		now := time.Now().Unix()
		return map[string]any{"id": uuid.NewString(), "type": "identity.verification.response", "from": from, "to": "UN-UNICEF",
			"purpose": "identity-verification", "legal_basis": "agreement", "iat": now, "exp": now + 300,
			"in_reply_to": req["id"], "subject": map[string]any{"ref": "S-1"},
			"record": map[string]any{"outcome": "match", "decided_by": "registrar"}}
	}
	for _, tc := range []struct {
		from  string
		found bool
	}{{"KZ-MJ", true}, {"IQ-MOI", false}} {
		s, err := x.begin(ctx, tc.from, r.seal(t, tc.from, answer(tc.from)))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range []station{x.open, x.identify, x.prepare} {
			if _, err := st(ctx, s); err != nil {
				t.Fatalf("%s: %v", tc.from, err)
			}
		}
		s.leave()
		if (s.input.Request != nil) != tc.found {
			t.Errorf("response from %s: request found %v, want %v", tc.from, s.input.Request != nil, tc.found)
		}
		if tc.found && s.input.Request.ID != req["id"] {
			t.Errorf("request %+v", s.input.Request)
		}
	}
}

// address tells every earlier recipient under a consent of its withdrawal.
func TestStationAddress(t *testing.T) {
	r, x, st := stationRig(t)
	ctx := context.Background()
	// An earlier referral under consent C-1 reached UN-IOM.
	rec := &store.Message{From: "KZ-MTSZN", ID: uuid.NewString(), To: "UN-IOM", Type: "referral",
		Purpose: "rehabilitation-referral", ConsentID: "C-1", Status: store.StatusAccepted,
		DecisionID: uuid.NewString(), CreatedAt: time.Now(), UpdatedAt: time.Now(), Expires: time.Now().Add(time.Hour)}
	d := store.Delivery{ID: uuid.NewString(), Recipient: "UN-IOM", MessageFrom: rec.From, MessageID: rec.ID,
		Envelope: []byte("x"), CreatedAt: time.Now(), VisibleAt: time.Now()}
	if _, err := st.Accept(ctx, rec, []store.Delivery{d}, audit.Entry{Kind: audit.KindAccepted, MessageID: rec.ID}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	w := map[string]any{"id": uuid.NewString(), "type": "consent.withdrawal", "from": "KZ-MTSZN", "to": "UN-UNICEF",
		"purpose": "rehabilitation-referral", "legal_basis": "consent", "iat": now, "exp": now + 300,
		"consent": map[string]any{"id": "C-1"}}
	s, err := x.begin(ctx, "KZ-MTSZN", r.seal(t, "KZ-MTSZN", w))
	if err != nil {
		t.Fatal(err)
	}
	defer s.leave()
	for _, stn := range []station{x.open, x.identify, x.address} {
		if _, err := stn(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, p := range s.recipients {
		ids = append(ids, p.ID)
	}
	if len(ids) != 2 || ids[0] != "UN-UNICEF" || ids[1] != "UN-IOM" {
		t.Errorf("withdrawal addressed to %v, want UN-UNICEF and UN-IOM", ids)
	}
	if ok, _ := st.ConsentWithdrawn(ctx, "KZ-MTSZN", "C-1"); !ok {
		t.Error("the withdrawal was not recorded")
	}
}
