// The contract every store.Store passes: one suite, run against each store
// the gateway opens (bolt.Open, redis.Open: contract_drivers_test.go) over
// a real backend.

package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// opener returns a store for the test t, opened with replica as its audit
// chain. Calls with the same t must return stores over the same data (the
// suite closes one and opens it again to check that the data survived);
// calls with different tests must return independent, empty stores. The
// suite closes the stores it opens.
type opener func(t *testing.T) store.Store

// replica is the audit chain the suite's stores are opened with.
const replica = "storetest"

// contractOptions give the suite what only the backend's own test can provide.
type contractOptions struct {
	// RawContains reports whether needle occurs anywhere in the raw storage
	// behind the stores of t: in any key or value, at any depth. The suite
	// closes every store of t before calling it. Without it the cases that
	// inspect the raw storage are skipped.
	RawContains func(t *testing.T, needle []byte) bool
	// Fault makes every change of the stores of t that has an audit entry
	// fail mid-way while fail is true: after the change's own checks and
	// before anything is committed (bbolt: the append inside the change's
	// transaction fails; Redis: the script fails after its checks, before
	// its first write), and the write probe (Ping) fail. Without it the
	// "both or neither" cases are skipped.
	Fault func(t *testing.T, fail bool)
	// Corrupt makes the queued record of delivery (recipient, id) behind the
	// stores of t undecodable. The suite closes every store of t first.
	Corrupt func(t *testing.T, recipient, deliveryID string)
	// Quarantined is how many records the stores of t moved to quarantine
	// (their OnQuarantine calls).
	Quarantined func(t *testing.T) int
	// Footprint measures the raw storage behind the stores of t. The suite
	// closes every store of t first. Without it the growth case is
	// skipped.
	Footprint func(t *testing.T) Footprint
}

// runContract runs the contract suite against the stores open returns.
func runContract(t *testing.T, open opener, opts contractOptions) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open opener)
	}{
		{"AcceptThenRead", testAcceptThenRead},
		{"DuplicateAccept", testDuplicateAccept},
		{"ConcurrentAccept", testConcurrentAccept},
		{"DenialThenAccept", testDenialThenAccept},
		{"DenialAfterAccept", testDenialAfterAccept},
		{"DenialThenDenial", testDenialThenDenial},
		{"SameIDFromTwoSenders", testSameIDFromTwoSenders},
		{"InvalidIdentifiers", testInvalidIdentifiers},
		{"LeaseOrderAndVisibility", testLeaseOrderAndVisibility},
		{"LeaseNotBeforeVisible", testLeaseNotBeforeVisible},
		{"LeaseMax", testLeaseMax},
		{"Ack", testAck},
		{"AckOneOfTwoDeliveries", testAckOneOfTwo},
		{"AckNotFound", testAckNotFound},
		{"Depth", testDepth},
		{"EnvelopeBytes", testEnvelopeBytes},
		{"ConcurrentLease", testConcurrentLease},
		{"Release", testRelease},
		{"DeadLetter", testDeadLetter},
		{"DeadLettersOrder", testDeadLettersOrder},
		{"Requeue", testRequeue},
		{"RequeueOneOfTwo", testRequeueOneOfTwo},
		{"Depths", testDepths},
		{"ConsentIndex", testConsentIndex},
		{"ConsentWithdrawal", testConsentWithdrawal},
		{"Purge", testPurge},
		{"PurgeBacklog", testPurgeBacklog},
		{"ReplayMemoryUntilExp", testReplayMemoryUntilExp},
		{"ForgetFollowsTheRecord", testForgetFollowsTheRecord},
		{"Reopen", testReopen},
		{"CloseThenUse", testCloseThenUse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
	t.Run("EntriesWithChanges", func(t *testing.T) { testEntriesWithChanges(t, open) })
	for _, tc := range bothOrNeither {
		t.Run("BothOrNeither/"+tc.name, func(t *testing.T) {
			if opts.Fault == nil {
				t.Skip("the backend injects no fault")
			}
			testBothOrNeither(t, open, opts.Fault, tc)
		})
	}
	t.Run("PingWrites", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for the write probe to fail, then to pass again")
		}
		if opts.Fault == nil {
			t.Skip("the backend injects no fault")
		}
		testPingWrites(t, open, opts.Fault)
	})
	t.Run("QuarantineCorruptDelivery", func(t *testing.T) {
		if opts.Corrupt == nil || opts.Quarantined == nil {
			t.Skip("the backend cannot corrupt a record")
		}
		testQuarantine(t, open, opts)
	})
	t.Run("PurgeLeavesNoPayload", func(t *testing.T) {
		if opts.RawContains == nil {
			t.Skip("the backend provides no raw scan")
		}
		testPurgeLeavesNoPayload(t, open, opts.RawContains)
	})
	t.Run("BoundedByWhatIsDue", func(t *testing.T) {
		if testing.Short() {
			t.Skip("accepts and purges 2,000 messages (XBORDER_STORE_GROWTH)")
		}
		if opts.Footprint == nil {
			t.Skip("the backend measures no footprint")
		}
		testBoundedByWhatIsDue(t, open, opts.Footprint)
	})
	t.Run("ForgetLeavesNoRecord", func(t *testing.T) {
		if opts.RawContains == nil {
			t.Skip("the backend provides no raw scan")
		}
		testForgetLeavesNoRecord(t, open, opts.RawContains)
	})
}

// base is whole milliseconds: backends may keep visible times in ms.
var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func openStore(t *testing.T, open opener) store.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func message(from, id, to string, at time.Time) *store.Message {
	return &store.Message{
		From: from, ID: id, To: to,
		Type: "identity.verification.request", Purpose: "refugee_status_determination",
		InReplyTo:           "",
		RequestedAssertions: []string{"identity_match", "nationality"},
		ConsentID:           "consent-" + id,
		Status:              store.StatusAccepted,
		JWSSHA256:           fmt.Sprintf("%064x", len(from)*1000+len(id)),
		DecisionID:          "decision-" + id,
		PolicyVersion:       "sha256:policy",
		Rules:               []string{"R1", "R7"},
		Redacted:            []string{"subject.biometrics"},
		RetentionDays:       30,
		Expires:             at.Add(time.Hour),
		CreatedAt:           at,
		UpdatedAt:           at,
		Answer:              []byte(`{"id":"` + id + `","status":"accepted"}`),
	}
}

func delivery(id, to string, at time.Time) store.Delivery {
	return store.Delivery{ID: id, Recipient: to, Envelope: []byte("jwe." + id), CreatedAt: at, VisibleAt: at}
}

// accept stores one message with one delivery of the same id to m.To.
func accept(t *testing.T, s store.Store, m *store.Message, deliveryID string) {
	t.Helper()
	if _, err := s.Accept(context.Background(), m, []store.Delivery{delivery(deliveryID, m.To, m.CreatedAt)}); err != nil {
		t.Fatalf("Accept(%s): %v", m.ID, err)
	}
}

// sameMessage compares records, times by instant.
func sameMessage(t *testing.T, got, want *store.Message) {
	t.Helper()
	if got == nil {
		t.Fatalf("got no message, want %s/%s", want.From, want.ID)
	}
	g, w := *got, *want
	for _, p := range []*store.Message{&g, &w} {
		p.Expires, p.CreatedAt, p.UpdatedAt = p.Expires.UTC(), p.CreatedAt.UTC(), p.UpdatedAt.UTC()
		p.PurgedAt = p.PurgedAt.UTC()
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("message differs:\n got %+v\nwant %+v", g, w)
	}
}

func ids(ds []store.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func lease(t *testing.T, s store.Store, recipient string, max int, vis time.Duration, now time.Time) []store.Delivery {
	t.Helper()
	ds, err := s.Lease(context.Background(), recipient, max, vis, now)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return ds
}

func depth(t *testing.T, s store.Store, recipient string) int {
	t.Helper()
	n, err := s.Depth(context.Background(), recipient)
	if err != nil {
		t.Fatalf("Depth: %v", err)
	}
	return n
}

func get(t *testing.T, s store.Store, from, id string) *store.Message {
	t.Helper()
	m, err := s.Message(context.Background(), from, id)
	if err != nil {
		t.Fatalf("Message(%s, %s): %v", from, id, err)
	}
	return m
}

func testAcceptThenRead(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	m := message("unhcr", "m1", "ke-dra", base)
	m.Status = "" // Accept sets it
	got, err := s.Accept(ctx, m, []store.Delivery{delivery("d1", "ke-dra", base)})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	want := message("unhcr", "m1", "ke-dra", base)
	sameMessage(t, got, want)
	sameMessage(t, get(t, s, "unhcr", "m1"), want)
	to, err := s.MessageTo(ctx, "ke-dra", "m1")
	if err != nil {
		t.Fatalf("MessageTo: %v", err)
	}
	sameMessage(t, to, want)

	notFound := []struct {
		name string
		fn   func() error
	}{
		{"unknown id", func() error { _, err := s.Message(ctx, "unhcr", "m2"); return err }},
		{"other sender", func() error { _, err := s.Message(ctx, "ke-dra", "m1"); return err }},
		{"MessageTo other recipient", func() error { _, err := s.MessageTo(ctx, "unhcr", "m1"); return err }},
		{"MessageTo unknown id", func() error { _, err := s.MessageTo(ctx, "ke-dra", "m2"); return err }},
	}
	for _, tc := range notFound {
		if err := tc.fn(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testDuplicateAccept(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	first := message("unhcr", "m1", "ke-dra", base)
	accept(t, s, first, "d1")

	cases := []struct {
		name string
		jws  string
	}{
		{"identical retry", first.JWSSHA256},
		{"different signed message", "other"},
	}
	for i, tc := range cases {
		again := message("unhcr", "m1", "ke-dra", base.Add(time.Minute))
		again.JWSSHA256, again.DecisionID = tc.jws, "decision-again"
		prev, err := s.Accept(ctx, again, []store.Delivery{delivery(fmt.Sprintf("d-again-%d", i), "ke-dra", base)})
		if !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("%s: err = %v, want ErrDuplicate", tc.name, err)
		}
		sameMessage(t, prev, first)
	}
	sameMessage(t, get(t, s, "unhcr", "m1"), first)
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1: a duplicate enqueued a delivery", n)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base.Add(time.Hour))); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("leased %v, want [d1]", got)
	}
}

func testConcurrentAccept(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	const n = 8
	var (
		wg    sync.WaitGroup
		won   = make([]bool, n)
		prevs = make([]*store.Message, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			m := message("unhcr", "m1", "ke-dra", base)
			m.JWSSHA256 = fmt.Sprintf("jws-%d", i)
			prevs[i], errs[i] = s.Accept(ctx, m, []store.Delivery{delivery(fmt.Sprintf("d%d", i), "ke-dra", base)})
			won[i] = errs[i] == nil
		})
	}
	wg.Wait()
	winner := -1
	for i := range n {
		switch {
		case won[i] && winner >= 0:
			t.Fatalf("callers %d and %d both accepted (from, id)", winner, i)
		case won[i]:
			winner = i
		case !errors.Is(errs[i], store.ErrDuplicate):
			t.Fatalf("caller %d: err = %v, want nil or ErrDuplicate", i, errs[i])
		}
	}
	if winner < 0 {
		t.Fatal("no caller accepted")
	}
	want := fmt.Sprintf("jws-%d", winner)
	for i := range n {
		if i != winner && (prevs[i] == nil || prevs[i].JWSSHA256 != want) {
			t.Errorf("caller %d got %+v as the existing record, want the winner's (%s)", i, prevs[i], want)
		}
	}
	if got := get(t, s, "unhcr", "m1").JWSSHA256; got != want {
		t.Errorf("stored JWS digest %q, want the winner's %q", got, want)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base)); !slices.Equal(got, []string{fmt.Sprintf("d%d", winner)}) {
		t.Errorf("queued %v, want only the winner's delivery d%d", got, winner)
	}
}

func testDenialThenAccept(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	denied := message("unhcr", "m1", "ke-dra", base)
	denied.DecisionID = "decision-deny"
	if err := s.RecordDenial(ctx, denied, denialEntry(denied)); err != nil {
		t.Fatalf("RecordDenial: %v", err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusDenied || got.DecisionID != "decision-deny" {
		t.Fatalf("after denial: status %q decision %q, want denied, decision-deny", got.Status, got.DecisionID)
	}
	if n := depth(t, s, "ke-dra"); n != 0 {
		t.Fatalf("a denial enqueued %d deliveries", n)
	}
	m := message("unhcr", "m1", "ke-dra", base.Add(time.Minute))
	accept(t, s, m, "d1")
	sameMessage(t, get(t, s, "unhcr", "m1"), m)
	to, err := s.MessageTo(ctx, "ke-dra", "m1")
	if err != nil {
		t.Fatalf("MessageTo: %v", err)
	}
	sameMessage(t, to, m)
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1", n)
	}
}

func testDenialAfterAccept(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	m := message("unhcr", "m1", "ke-dra", base)
	accept(t, s, m, "d1")
	denied := message("unhcr", "m1", "ke-dra", base.Add(time.Minute))
	denied.Status, denied.DecisionID = store.StatusDenied, "decision-deny"
	if err := s.RecordDenial(ctx, denied, denialEntry(denied)); err != nil {
		t.Fatalf("RecordDenial after accept: %v", err)
	}
	sameMessage(t, get(t, s, "unhcr", "m1"), m)
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1", n)
	}
}

func testDenialThenDenial(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	for i, decision := range []string{"decision-1", "decision-2"} {
		m := message("unhcr", "m1", "ke-dra", base.Add(time.Duration(i)*time.Minute))
		m.DecisionID = decision
		if err := s.RecordDenial(ctx, m, denialEntry(m)); err != nil {
			t.Fatalf("RecordDenial %d: %v", i, err)
		}
		want := *m
		want.Status = store.StatusDenied
		sameMessage(t, get(t, s, "unhcr", "m1"), &want)
	}
}

// (from, id) is the key: another sender may use the same id, and the
// recipient index keeps the first accepted message.
func testSameIDFromTwoSenders(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	// A denial from a third sender does not hold the index against acceptance.
	denied := message("ug-opm", "m1", "ke-dra", base)
	if err := s.RecordDenial(ctx, denied, denialEntry(denied)); err != nil {
		t.Fatalf("RecordDenial: %v", err)
	}
	a := message("unhcr", "m1", "ke-dra", base)
	b := message("iom", "m1", "ke-dra", base.Add(time.Second))
	accept(t, s, a, "d-a")
	accept(t, s, b, "d-b")
	sameMessage(t, get(t, s, "unhcr", "m1"), a)
	sameMessage(t, get(t, s, "iom", "m1"), b)
	if got := get(t, s, "ug-opm", "m1"); got.Status != store.StatusDenied {
		t.Errorf("third sender's record: status %q, want denied", got.Status)
	}
	to, err := s.MessageTo(ctx, "ke-dra", "m1")
	if err != nil {
		t.Fatalf("MessageTo: %v", err)
	}
	sameMessage(t, to, a)
	if n := depth(t, s, "ke-dra"); n != 2 {
		t.Errorf("Depth = %d, want 2", n)
	}
}

func testInvalidIdentifiers(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	bad := []struct {
		name string
		m    *store.Message
		ds   []store.Delivery
	}{
		{"empty from", message("", "m1", "ke-dra", base), nil},
		{"empty id", message("unhcr", "", "ke-dra", base), nil},
		{"NUL in from", message("un\x00hcr", "m1", "ke-dra", base), nil},
		{"NUL in id", message("unhcr", "m\x001", "ke-dra", base), nil},
		{"empty delivery id", message("unhcr", "m1", "ke-dra", base), []store.Delivery{delivery("", "ke-dra", base)}},
		{"repeated delivery id", message("unhcr", "m1", "ke-dra", base), []store.Delivery{delivery("d1", "ke-dra", base), delivery("d1", "ke-dra", base)}},
		{"NUL in consent id", func() *store.Message {
			m := message("unhcr", "m1", "ke-dra", base)
			m.ConsentID = "c\x001"
			return m
		}(), []store.Delivery{delivery("d1", "ke-dra", base)}},
	}
	for _, tc := range bad {
		if _, err := s.Accept(ctx, tc.m, tc.ds); err == nil || errors.Is(err, store.ErrDuplicate) {
			t.Errorf("Accept with %s: err = %v, want a refusal", tc.name, err)
		}
	}
	if _, err := s.Message(ctx, "unhcr", "m1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused Accept left a record: err = %v", err)
	}
	if n := depth(t, s, "ke-dra"); n != 0 {
		t.Errorf("a refused Accept left %d deliveries", n)
	}
	if _, err := s.Message(ctx, "un\x00hcr", "m1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message with NUL: err = %v, want ErrNotFound", err)
	}
	// A delivery id already queued for the recipient is refused, atomically.
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	if _, err := s.Accept(ctx, message("unhcr", "m2", "ke-dra", base), []store.Delivery{delivery("d1", "ke-dra", base)}); err == nil {
		t.Error("Accept reusing a queued delivery id: err = nil")
	}
	if _, err := s.Message(ctx, "unhcr", "m2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused Accept left a record: err = %v", err)
	}
}

func testLeaseOrderAndVisibility(t *testing.T, open opener) {
	s := openStore(t, open)
	// Accepted out of order: the queue follows visible time, not arrival.
	for _, i := range []int{2, 0, 1} {
		at := base.Add(time.Duration(i) * time.Second)
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i), "ke-dra", at), fmt.Sprintf("d%d", i))
	}
	const vis = 30 * time.Second
	now := base.Add(10 * time.Second)

	steps := []struct {
		name     string
		max      int
		at       time.Time
		want     []string
		attempts int
	}{
		{"oldest first, up to max", 2, now, []string{"d0", "d1"}, 1},
		{"leased ones hidden", 10, now.Add(time.Second), []string{"d2"}, 1},
		{"all hidden", 10, now.Add(2 * time.Second), nil, 0},
		{"one ms before visibility ends", 10, now.Add(vis - time.Millisecond), nil, 0},
		{"offered again when visibility ends", 10, now.Add(vis), []string{"d0", "d1"}, 2},
		{"then the third", 10, now.Add(time.Second + vis), []string{"d2"}, 2},
	}
	for _, st := range steps {
		got := lease(t, s, "ke-dra", st.max, vis, st.at)
		if !slices.Equal(ids(got), st.want) {
			t.Fatalf("%s: leased %v, want %v", st.name, ids(got), st.want)
		}
		for _, d := range got {
			if d.Attempts != st.attempts {
				t.Errorf("%s: %s attempts = %d, want %d", st.name, d.ID, d.Attempts, st.attempts)
			}
			if !d.VisibleAt.Equal(st.at.Add(vis)) {
				t.Errorf("%s: %s visible at %v, want %v", st.name, d.ID, d.VisibleAt, st.at.Add(vis))
			}
			if d.Recipient != "ke-dra" || d.MessageFrom != "unhcr" || d.MessageID != "m"+d.ID[1:] {
				t.Errorf("%s: %s addressed %s from %s/%s", st.name, d.ID, d.Recipient, d.MessageFrom, d.MessageID)
			}
			if want := "jwe." + d.ID; string(d.Envelope) != want {
				t.Errorf("%s: %s envelope %q, want %q", st.name, d.ID, d.Envelope, want)
			}
			created := base.Add(time.Duration(d.ID[1]-'0') * time.Second)
			if !d.CreatedAt.Equal(created) {
				t.Errorf("%s: %s created %v, want %v", st.name, d.ID, d.CreatedAt, created)
			}
		}
	}
	m := get(t, s, "unhcr", "m0")
	if m.Attempts != 2 || m.Status != store.StatusAccepted {
		t.Errorf("message after two leases: attempts %d status %q, want 2 accepted", m.Attempts, m.Status)
	}
}

func testLeaseNotBeforeVisible(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	m := message("unhcr", "m1", "ke-dra", base)
	d := delivery("d1", "ke-dra", base)
	d.VisibleAt = base.Add(time.Minute) // e.g. a delayed retry
	if _, err := s.Accept(ctx, m, []store.Delivery{d}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if got := lease(t, s, "ke-dra", 1, time.Minute, base.Add(time.Minute-time.Millisecond)); len(got) != 0 {
		t.Errorf("leased %v before its visible time", ids(got))
	}
	if got := lease(t, s, "ke-dra", 1, time.Minute, base.Add(time.Minute)); !slices.Equal(ids(got), []string{"d1"}) {
		t.Errorf("leased %v at its visible time, want [d1]", ids(got))
	}
	if got := lease(t, s, "other", 1, time.Minute, base.Add(time.Hour)); len(got) != 0 {
		t.Errorf("another recipient leased %v", ids(got))
	}
}

func testLeaseMax(t *testing.T, open opener) {
	s := openStore(t, open)
	for i := range 5 {
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i), "ke-dra", base.Add(time.Duration(i)*time.Millisecond)), fmt.Sprintf("d%d", i))
	}
	for _, tc := range []struct{ max, want int }{{0, 0}, {-1, 0}, {1, 1}, {3, 3}, {10, 1}} {
		if got := lease(t, s, "ke-dra", tc.max, time.Hour, base.Add(time.Second)); len(got) != tc.want {
			t.Errorf("Lease(max=%d) returned %d, want %d", tc.max, len(got), tc.want)
		}
	}
}

func testAck(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	accept(t, s, message("unhcr", "m2", "ke-dra", base), "d2")
	lease(t, s, "ke-dra", 10, time.Minute, base)
	ackAt := base.Add(5 * time.Second)
	d, err := s.Delivery(ctx, "ke-dra", "d1")
	if err != nil || d.ID != "d1" || d.MessageFrom != "unhcr" || d.MessageID != "m1" || d.Attempts != 1 || len(d.Envelope) == 0 {
		t.Fatalf("Delivery before ack: %+v %v", d, err)
	}
	if _, err := s.Delivery(ctx, "ug-x", "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delivery of another recipient: err = %v, want ErrNotFound", err)
	}
	if err := s.Ack(ctx, "ke-dra", "d1", ackAt); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if _, err := s.Delivery(ctx, "ke-dra", "d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delivery after ack: err = %v, want ErrNotFound", err)
	}
	m := get(t, s, "unhcr", "m1")
	if m.Status != store.StatusDelivered || !m.UpdatedAt.Equal(ackAt) || m.Attempts != 1 {
		t.Errorf("after ack: status %q updated %v attempts %d, want delivered %v 1", m.Status, m.UpdatedAt, m.Attempts, ackAt)
	}
	if m := get(t, s, "unhcr", "m2"); m.Status != store.StatusAccepted {
		t.Errorf("unacked message: status %q, want accepted", m.Status)
	}
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1", n)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base.Add(time.Hour))); !slices.Equal(got, []string{"d2"}) {
		t.Errorf("after ack leased %v, want [d2]", got)
	}
	if err := s.Ack(ctx, "ke-dra", "d1", ackAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Ack: err = %v, want ErrNotFound", err)
	}
	// Ack of a delivery that was never leased (or whose lease ran out) works.
	accept(t, s, message("unhcr", "m3", "ke-dra", base), "d3")
	if err := s.Ack(ctx, "ke-dra", "d3", ackAt); err != nil {
		t.Errorf("Ack of an unleased delivery: %v", err)
	}
}

func testAckOneOfTwo(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	m := message("unhcr", "m1", "ke-dra", base)
	ds := []store.Delivery{delivery("d1", "ke-dra", base), delivery("d2", "ke-dra-archive", base)}
	if _, err := s.Accept(ctx, m, ds); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if err := s.Ack(ctx, "ke-dra", "d1", base.Add(time.Second)); err != nil {
		t.Fatalf("Ack d1: %v", err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusAccepted || !got.UpdatedAt.Equal(base) {
		t.Errorf("one of two acked: status %q updated %v, want accepted %v", got.Status, got.UpdatedAt, base)
	}
	if err := s.Ack(ctx, "ke-dra-archive", "d2", base.Add(2*time.Second)); err != nil {
		t.Fatalf("Ack d2: %v", err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusDelivered || !got.UpdatedAt.Equal(base.Add(2*time.Second)) {
		t.Errorf("both acked: status %q updated %v, want delivered", got.Status, got.UpdatedAt)
	}
}

func testAckNotFound(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	cases := []struct{ name, recipient, id string }{
		{"another recipient's delivery", "ug-opm", "d1"},
		{"unknown delivery", "ke-dra", "d-unknown"},
		{"empty id", "ke-dra", ""},
		{"empty recipient", "", "d1"},
	}
	for _, tc := range cases {
		if err := s.Ack(ctx, tc.recipient, tc.id, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d after refused acks, want 1", n)
	}
	if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusAccepted {
		t.Errorf("status %q after refused acks, want accepted", m.Status)
	}
}

func testDepth(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	if n := depth(t, s, "ke-dra"); n != 0 {
		t.Fatalf("empty Depth = %d", n)
	}
	for i := range 4 {
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i), "ke-dra", base), fmt.Sprintf("d%d", i))
	}
	accept(t, s, message("unhcr", "m9", "ug-opm", base), "d9")
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"queued", func() {}, 4},
		{"leased still count", func() { lease(t, s, "ke-dra", 3, time.Minute, base) }, 4},
		{"ack removes", func() { s.Ack(ctx, "ke-dra", "d0", base) }, 3},
	}
	for _, st := range steps {
		st.do()
		if n := depth(t, s, "ke-dra"); n != st.want {
			t.Errorf("%s: Depth = %d, want %d", st.name, n, st.want)
		}
	}
	if n := depth(t, s, "ug-opm"); n != 1 {
		t.Errorf("other recipient Depth = %d, want 1", n)
	}
}

func testEnvelopeBytes(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	env := make([]byte, 256<<10)
	for i := range env {
		env[i] = byte(i * 7)
	}
	d := delivery("d1", "ke-dra", base)
	d.Envelope = env
	if _, err := s.Accept(ctx, message("unhcr", "m1", "ke-dra", base), []store.Delivery{d}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	got := lease(t, s, "ke-dra", 1, time.Minute, base)
	if len(got) != 1 || !bytes.Equal(got[0].Envelope, env) {
		t.Fatalf("envelope did not survive the queue byte for byte")
	}
}

func testConcurrentLease(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	const n, workers = 40, 4
	for i := range n {
		accept(t, s, message("unhcr", fmt.Sprintf("m%02d", i), "ke-dra", base), fmt.Sprintf("d%02d", i))
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for range workers {
		wg.Go(func() {
			for {
				ds, err := s.Lease(ctx, "ke-dra", 3, time.Minute, base)
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				total := 0
				for _, d := range ds {
					seen[d.ID]++
				}
				for _, c := range seen {
					total += c
				}
				mu.Unlock()
				if total > 2*n {
					return // deliveries are not being hidden; reported below
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Lease: %v", err)
	}
	if len(seen) != n {
		t.Errorf("leased %d distinct deliveries, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s handed out %d times within its visibility", id, c)
		}
	}
}

func testReopen(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t)
	m := message("unhcr", "m1", "ke-dra", base)
	accept(t, s, m, "d1")
	accept(t, s, message("unhcr", "m2", "ke-dra", base), "d2")
	m3 := message("unhcr", "m3", "ke-dra", base)
	if err := s.RecordDenial(ctx, m3, denialEntry(m3)); err != nil {
		t.Fatalf("RecordDenial: %v", err)
	}
	lease(t, s, "ke-dra", 1, time.Minute, base) // d1 hidden until base+1m
	// A dead letter, a withdrawn consent and a message due for purge.
	accept(t, s, message("unhcr", "m4", "ke-dra", base), "d4")
	if err := s.DeadLetter(ctx, "ke-dra", "d4", base); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if err := s.WithdrawConsent(ctx, "unhcr", "consent-m1", base); err != nil {
		t.Fatalf("WithdrawConsent: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, open)
	m.Attempts = 1
	sameMessage(t, get(t, s, "unhcr", "m1"), m)
	if got := get(t, s, "unhcr", "m3"); got.Status != store.StatusDenied {
		t.Errorf("denial after reopen: status %q", got.Status)
	}
	if _, err := s.MessageTo(ctx, "ke-dra", "m2"); err != nil {
		t.Errorf("MessageTo after reopen: %v", err)
	}
	if n := depth(t, s, "ke-dra"); n != 2 {
		t.Errorf("Depth after reopen = %d, want 2", n)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base.Add(time.Second))); !slices.Equal(got, []string{"d2"}) {
		t.Errorf("after reopen leased %v, want [d2] (d1 still leased)", got)
	}
	if _, err := s.Accept(ctx, message("unhcr", "m1", "ke-dra", base), nil); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("replay memory lost on reopen: err = %v", err)
	}
	if got := deadLetterIDs(t, s); !slices.Equal(got, []string{"d4"}) {
		t.Errorf("dead letters after reopen %v, want [d4]", got)
	}
	if got := consentRecipients(t, s, "unhcr", "consent-m2"); !slices.Equal(got, []string{"ke-dra"}) {
		t.Errorf("consent recipients after reopen %v, want [ke-dra]", got)
	}
	if w, err := s.ConsentWithdrawn(ctx, "unhcr", "consent-m1"); err != nil || !w {
		t.Errorf("withdrawal after reopen: %v, %v; want true", w, err)
	}
	got := purge(t, s, base.Add(30*24*time.Hour))
	slices.SortFunc(got, func(a, b store.Purged) int { return cmpString(a.ID, b.ID) })
	want := []store.Purged{{From: "unhcr", ID: "m1", Deliveries: 1, Payloads: true, Forgotten: true},
		{From: "unhcr", ID: "m2", Deliveries: 1, Payloads: true, Forgotten: true},
		{From: "unhcr", ID: "m3", Forgotten: true}, // the denial: nothing to purge
		{From: "unhcr", ID: "m4", Deliveries: 1, Payloads: true, Forgotten: true}}
	if !slices.Equal(got, want) {
		t.Errorf("purge after reopen: %+v, want %+v", got, want)
	}
}

func testCloseThenUse(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t)
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Accept", func() error {
			_, err := s.Accept(ctx, message("unhcr", "m2", "ke-dra", base), []store.Delivery{delivery("d2", "ke-dra", base)})
			return err
		}},
		{"RecordDenial", func() error {
			m3 := message("unhcr", "m3", "ke-dra", base)
			return s.RecordDenial(ctx, m3, denialEntry(m3))
		}},
		{"Append", func() error { _, err := s.Append(ctx, replica, policyEntry()); return err }},
		{"Message", func() error { _, err := s.Message(ctx, "unhcr", "m1"); return err }},
		{"MessageTo", func() error { _, err := s.MessageTo(ctx, "ke-dra", "m1"); return err }},
		{"Lease", func() error { _, err := s.Lease(ctx, "ke-dra", 1, time.Minute, base); return err }},
		{"Ack", func() error { return s.Ack(ctx, "ke-dra", "d1", base) }},
		{"Depth", func() error { _, err := s.Depth(ctx, "ke-dra"); return err }},
		{"Depths", func() error { _, err := s.Depths(ctx); return err }},
		{"Release", func() error { return s.Release(ctx, "ke-dra", "d1", base) }},
		{"DeadLetter", func() error { return s.DeadLetter(ctx, "ke-dra", "d1", base) }},
		{"DeadLetters", func() error { _, err := s.DeadLetters(ctx); return err }},
		{"Requeue", func() error { return s.Requeue(ctx, "ke-dra", "d1", base) }},
		{"ConsentRecipients", func() error { _, err := s.ConsentRecipients(ctx, "unhcr", "consent-m1"); return err }},
		{"WithdrawConsent", func() error { return s.WithdrawConsent(ctx, "unhcr", "consent-m1", base) }},
		{"ConsentWithdrawn", func() error { _, err := s.ConsentWithdrawn(ctx, "unhcr", "consent-m1"); return err }},
		{"Purge", func() error { _, err := s.Purge(ctx, base.Add(365*24*time.Hour)); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		if err := c.fn(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: err = %v, want ErrUnavailable", c.name, err)
		}
	}
}
