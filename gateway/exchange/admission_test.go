package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

func TestAdmissionBoundsConcurrency(t *testing.T) {
	a := newAdmission(3)
	var now, peak atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.enter(context.Background()); err != nil {
				t.Error(err)
				return
			}
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			now.Add(-1)
			a.leave()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p < 1 || p > 3 {
		t.Fatalf("peak concurrency %d, want 1..3", p)
	}
}

func TestAdmissionWaitEndsWithContext(t *testing.T) {
	a := newAdmission(1)
	if err := a.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.enter(ctx); err == nil {
		t.Fatal("entered a full admission")
	}
	a.leave()
	if err := a.enter(context.Background()); err != nil {
		t.Fatalf("after leave: %v", err)
	}
	var none admission // unbounded
	for range 100 {
		if err := none.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	none.leave()
}

// gatedPolicy holds every decision until released: it proves, through the
// real Submit, that max_inflight bounds the submissions being worked on
// (the one holding the place is stuck in the policy; the next one must not
// get there).
type gatedPolicy struct {
	entered chan struct{}
	release chan struct{}
}

func (g gatedPolicy) Current() *policy.Bundle {
	g.entered <- struct{}{}
	<-g.release
	return nil // no bundle: the submission is denied (R1), which is fine here
}

func TestMaxInflightBoundsSubmit(t *testing.T) {
	for _, bound := range []int{1, 2} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			r := newRig(t, nil)
			gate := gatedPolicy{entered: make(chan struct{}, 8), release: make(chan struct{})}
			x, err := New(Options{Registry: trust.NewHolder(r.reg), Policy: gate, Store: denialStore{},
				SigningKey: r.x.o.SigningKey, DecryptionKeys: r.x.o.DecryptionKeys, MaxInflight: bound,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			bodies := sealedRequests(t, r, bound+2)
			done := make(chan struct{}, len(bodies))
			for _, b := range bodies {
				go func() {
					_, _ = x.Submit(context.Background(), "UN-UNICEF", b)
					done <- struct{}{}
				}()
			}
			for range bound {
				<-gate.entered // bound submissions reach the policy...
			}
			// ...the others wait for a place (an event, not a time)...
			for x.admit.waiting.Load() != int32(len(bodies)-bound) {
				time.Sleep(time.Millisecond)
			}
			select {
			case <-gate.entered: // ...and none got to the policy meanwhile
				t.Fatalf("more than %d submissions were worked on at once", bound)
			default:
			}
			close(gate.release)
			for range bodies {
				<-done
			}
		})
	}
}

// denialStore records denials and knows no message.
type denialStore struct{ Store }

func (denialStore) Message(context.Context, string, string) (*store.Message, error) {
	return nil, store.ErrNotFound
}

func (denialStore) RecordDenial(context.Context, *store.Message, audit.Entry) error { return nil }

// sealedRequests are n verification requests from UN-UNICEF to KZ-MJ,
// signed and encrypted for the gateway.
func sealedRequests(t *testing.T, r *rig, n int) [][]byte {
	t.Helper()
	sign, err := envelope.LoadPrivateJWK(filepath.Join(r.dir, "UN-UNICEF", "sign.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range n {
		now := time.Now().Unix()
		b, _ := json.Marshal(map[string]any{"id": uuid.NewString(), "type": "identity.verification.request",
			"from": "UN-UNICEF", "to": "KZ-MJ", "purpose": "identity-verification", "legal_basis": "agreement",
			"iat": now, "exp": now + 300, "subject": map[string]any{"ref": "S-1"},
			"record": map[string]any{"requested_assertions": []string{"identity_match"}}})
		sealed, err := envelope.Seal(b, sign, envelope.TypMessage, r.x.o.DecryptionKeys[0].Public())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sealed)
	}
	return out
}
