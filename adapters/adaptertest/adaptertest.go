// Package adaptertest is the conformance suite every delivery adapter
// passes (PROTOCOL §4). An adapter's test gives Run a Harness that starts a
// fresh recipient and reports what that recipient has received; the suite
// checks the contract the delivery worker relies on:
//
//   - nil means the recipient holds the envelope, byte for byte;
//   - delivery is at least once: a redelivery leaves the recipient with the
//     same delivery id and envelope, never something else;
//   - a done context makes Deliver return promptly with the context's error;
//   - when the recipient refuses, Deliver returns an error, and succeeds
//     again once the recipient recovers;
//   - a delivery id that is not a UUID, or an empty envelope, is refused and
//     nothing reaches the recipient;
//   - Deliver is safe for concurrent use.
package adaptertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/adapters"
)

// Prompt is how long a Deliver with a done context may take.
const Prompt = 2 * time.Second

// Harness starts recipients for the suite.
type Harness struct {
	// New starts a fresh recipient that has received nothing, and returns
	// an adapter that delivers to it. Cleanup goes through t.Cleanup.
	New func(t *testing.T) Target
}

// Target is one recipient and the adapter that reaches it.
type Target struct {
	Adapter adapters.Adapter
	// Received returns what the recipient holds so far, in any order, with
	// at least ID and Envelope set. A recipient that keeps redeliveries as
	// separate copies returns each.
	Received func(t *testing.T) []adapters.Delivery
	// Fail makes the recipient refuse deliveries (on) or accept them again
	// (off). A refused delivery must not be recorded. Nil skips the cases
	// that need it.
	Fail func(t *testing.T, on bool)
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("adaptertest: Harness.New is nil")
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, tg Target)
	}{
		{"delivers the envelope intact", deliversIntact},
		{"redelivery keeps one id and envelope", redelivery},
		{"distinct deliveries all arrive", distinct},
		{"concurrent deliveries all arrive", concurrent},
		{"canceled context", func(t *testing.T, tg Target) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			doneContext(t, tg, ctx, context.Canceled)
		}},
		{"expired deadline", func(t *testing.T, tg Target) {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			defer cancel()
			doneContext(t, tg, ctx, context.DeadlineExceeded)
		}},
		{"refusal then recovery", refusal},
		{"invalid delivery id refused", invalidID},
		{"empty envelope refused", emptyEnvelope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := h.New(t)
			if tg.Adapter == nil || tg.Received == nil {
				t.Fatal("adaptertest: Target needs Adapter and Received")
			}
			tc.run(t, tg)
		})
	}
}

// NewDelivery returns a delivery with a fresh id and an envelope shaped like
// a compact JWE of about size bytes of ciphertext.
func NewDelivery(t testing.TB, size int) adapters.Delivery {
	t.Helper()
	part := func(n int) string {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatalf("adaptertest: random: %v", err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ECDH-ES+A256KW","enc":"A256GCM","cty":"xborder+jws","kid":"test"}`))
	env := strings.Join([]string{header, part(40), part(12), part(size), part(16)}, ".")
	return adapters.Delivery{
		ID:        uuid.NewString(),
		Recipient: "UN-TEST",
		MessageID: uuid.NewString(),
		Envelope:  []byte(env),
	}
}

func deliver(t *testing.T, a adapters.Adapter, d adapters.Delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Deliver(ctx, d); err != nil {
		t.Fatalf("Deliver(%s) = %v, want nil", d.ID, err)
	}
}

// byID groups what the recipient holds by delivery id.
func byID(t *testing.T, tg Target) map[string][]adapters.Delivery {
	t.Helper()
	m := map[string][]adapters.Delivery{}
	for _, d := range tg.Received(t) {
		m[d.ID] = append(m[d.ID], d)
	}
	return m
}

// holds checks that every copy the recipient holds of d.ID carries d's
// envelope, and returns how many copies there are.
func holds(t *testing.T, got map[string][]adapters.Delivery, d adapters.Delivery) int {
	t.Helper()
	for i, r := range got[d.ID] {
		if string(r.Envelope) != string(d.Envelope) {
			t.Errorf("copy %d of %s: envelope differs (%d bytes received, %d sent)", i, d.ID, len(r.Envelope), len(d.Envelope))
		}
	}
	return len(got[d.ID])
}

func deliversIntact(t *testing.T, tg Target) {
	d := NewDelivery(t, 4096)
	deliver(t, tg.Adapter, d)
	got := byID(t, tg)
	if n := holds(t, got, d); n != 1 {
		t.Errorf("recipient holds %d copies of %s, want 1", n, d.ID)
	}
	if len(got) != 1 {
		t.Errorf("recipient holds %d delivery ids, want 1", len(got))
	}
}

func redelivery(t *testing.T, tg Target) {
	d := NewDelivery(t, 512)
	deliver(t, tg.Adapter, d)
	deliver(t, tg.Adapter, d)
	got := byID(t, tg)
	if n := holds(t, got, d); n < 1 || n > 2 {
		t.Errorf("recipient holds %d copies of %s, want 1 or 2", n, d.ID)
	}
	if len(got) != 1 {
		t.Errorf("recipient holds %d delivery ids, want 1", len(got))
	}
}

func distinct(t *testing.T, tg Target) {
	ds := make([]adapters.Delivery, 5)
	for i := range ds {
		ds[i] = NewDelivery(t, 256*(i+1))
		deliver(t, tg.Adapter, ds[i])
	}
	checkAll(t, tg, ds)
}

func concurrent(t *testing.T, tg Target) {
	ds := make([]adapters.Delivery, 8)
	for i := range ds {
		ds[i] = NewDelivery(t, 300)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i := range ds {
		wg.Go(func() { errs[i] = tg.Adapter.Deliver(ctx, ds[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Deliver: %v", err)
	}
	checkAll(t, tg, ds)
}

func checkAll(t *testing.T, tg Target, ds []adapters.Delivery) {
	t.Helper()
	got := byID(t, tg)
	for _, d := range ds {
		if n := holds(t, got, d); n != 1 {
			t.Errorf("recipient holds %d copies of %s, want 1", n, d.ID)
		}
	}
	if len(got) != len(ds) {
		t.Errorf("recipient holds %d delivery ids, want %d", len(got), len(ds))
	}
}

func doneContext(t *testing.T, tg Target, ctx context.Context, want error) {
	d := NewDelivery(t, 256)
	start := time.Now()
	err := tg.Adapter.Deliver(ctx, d)
	if took := time.Since(start); took > Prompt {
		t.Errorf("Deliver with a done context took %v, want under %v", took, Prompt)
	}
	if !errors.Is(err, want) {
		t.Errorf("Deliver with a done context = %v, want an error wrapping %v", err, want)
	}
	if got := byID(t, tg); len(got) != 0 {
		t.Errorf("recipient holds %d deliveries after a done context, want 0", len(got))
	}
}

func refusal(t *testing.T, tg Target) {
	if tg.Fail == nil {
		t.Skip("the harness cannot make the recipient refuse")
	}
	d := NewDelivery(t, 256)
	tg.Fail(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tg.Adapter.Deliver(ctx, d); err == nil {
		t.Fatal("Deliver to a refusing recipient = nil, want an error")
	}
	tg.Fail(t, false)
	if got := byID(t, tg); len(got) != 0 {
		t.Fatalf("recipient holds %d deliveries after refusing, want 0", len(got))
	}
	deliver(t, tg.Adapter, d) // the worker's retry, once it has recovered
	if n := holds(t, byID(t, tg), d); n != 1 {
		t.Errorf("recipient holds %d copies of %s after recovering, want 1", n, d.ID)
	}
}

func invalidID(t *testing.T, tg Target) {
	valid := NewDelivery(t, 64)
	for _, tc := range []struct{ name, id string }{
		{"empty", ""},
		{"parent traversal", "../escape"},
		{"deep traversal", "../../../../tmp/escape"},
		{"absolute path", "/tmp/escape"},
		{"slash inside", "0b7c6a1e-2f1d/4c3b-9a8e-7d6c5b4a3f2e"},
		{"backslash", `..\escape`},
		{"uuid with a suffix", valid.ID + "/../x"},
		{"uuid as a path", "../" + valid.ID[3:]},
		{"not hex", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"},
		{"header injection", "a\r\nX-Injected: 1"},
		{"nul byte", "0b7c6a1e-2f1d-4c3b-9a8e-7d6c5b4a3f2\x00"},
		{"urn form", "urn:uuid:" + valid.ID},
		{"braces", "{" + valid.ID + "}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := valid
			d.ID = tc.id
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tg.Adapter.Deliver(ctx, d); err == nil {
				t.Errorf("Deliver(id %q) = nil, want an error", tc.id)
			}
		})
	}
	if got := byID(t, tg); len(got) != 0 {
		ids := make([]string, 0, len(got))
		for id := range got {
			ids = append(ids, fmt.Sprintf("%q", id))
		}
		slices.Sort(ids)
		t.Errorf("recipient holds deliveries %v after invalid ids, want none", ids)
	}
}

func emptyEnvelope(t *testing.T, tg Target) {
	d := NewDelivery(t, 64)
	d.Envelope = nil
	if err := tg.Adapter.Deliver(context.Background(), d); err == nil {
		t.Error("Deliver with an empty envelope = nil, want an error")
	}
	if got := byID(t, tg); len(got) != 0 {
		t.Errorf("recipient holds %d deliveries after an empty envelope, want 0", len(got))
	}
}
