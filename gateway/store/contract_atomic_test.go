package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// The audit entry is part of the store contract: Accept, RecordDenial, Ack,
// DeadLetter and Purge (a purge, a forgetting) append their entries
// atomically with their change, both or neither.

func denialEntry(m *store.Message) audit.Entry {
	return audit.Entry{Kind: audit.KindDenied, MessageID: m.ID, DecisionID: m.DecisionID, PolicyVersion: m.PolicyVersion,
		From: m.From, To: m.To, Purpose: m.Purpose, Type: m.Type, Rules: m.Rules}
}

func acceptEntry(m *store.Message) audit.Entry {
	return audit.Entry{Kind: audit.KindAccepted, MessageID: m.ID, DecisionID: m.DecisionID, PolicyVersion: m.PolicyVersion,
		From: m.From, To: m.To, Purpose: m.Purpose, Type: m.Type, Redacted: m.Redacted,
		Categories: []string{"subject.names", "record.Weird Name"}}
}

func policyEntry() audit.Entry {
	return audit.Entry{Kind: audit.KindPolicyChanged, PolicyVersion: "sha256:next"}
}

// chain reads the suite's chain and checks that it verifies.
func chain(t *testing.T, s store.Store) []audit.Entry {
	t.Helper()
	ctx := context.Background()
	var out []audit.Entry
	if err := s.Entries(ctx, replica, 1, func(e audit.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("Entries: %v", err)
	}
	if _, err := audit.VerifyLive(ctx, s, audit.KeyFunc()); err != nil {
		t.Fatalf("the chain does not verify: %v", err)
	}
	return out
}

func kinds(es []audit.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Kind + ":" + e.MessageID
	}
	return out
}

// Each change appends its entries, and only its own; a change that does not
// happen (a duplicate, an unknown delivery) appends none.
func testEntriesWithChanges(t *testing.T, open opener) {
	s := openStore(t, open)
	m1 := acceptAndDenyWithEntries(t, s)
	ackAndDeadLetterWithEntries(t, s)
	if _, err := s.Append(context.Background(), replica, policyEntry()); err != nil {
		t.Fatalf("Append: %v", err)
	}
	// All three are due at +30 days: m1 and m3 purged and forgotten, the
	// denial m2 forgotten.
	if got := purge(t, s, base.Add(30*24*time.Hour)); len(got) != 3 {
		t.Fatalf("purged %+v, want m1, m2 and m3", got)
	}
	es := chain(t, s)
	checkEntryOrder(t, es)
	checkEntryFields(t, es, m1)
}

// acceptAndDenyWithEntries accepts m1 with two entries, then tries it
// again (a duplicate); denies m2, then m1 (already accepted). It returns
// m1.
func acceptAndDenyWithEntries(t *testing.T, s store.Store) *store.Message {
	t.Helper()
	ctx := context.Background()
	m1 := message("unhcr", "m1", "ke-dra", base)
	withdrawn := audit.Entry{Kind: audit.KindConsentWithdrawn, MessageID: "m1", From: "unhcr", To: "ke-dra"}
	if _, err := s.Accept(ctx, m1, []store.Delivery{delivery("d1", "ke-dra", base)}, acceptEntry(m1), withdrawn); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if _, err := s.Accept(ctx, m1, []store.Delivery{delivery("d1b", "ke-dra", base)}, acceptEntry(m1)); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate Accept: %v", err)
	}
	m2 := message("unhcr", "m2", "ke-dra", base)
	if err := s.RecordDenial(ctx, m2, denialEntry(m2)); err != nil {
		t.Fatalf("RecordDenial: %v", err)
	}
	// A denial of an accepted id: the record stays, the entry is appended.
	late := message("unhcr", "m1", "ke-dra", base.Add(time.Minute))
	late.DecisionID = "decision-late"
	if err := s.RecordDenial(ctx, late, denialEntry(late)); err != nil {
		t.Fatalf("RecordDenial after accept: %v", err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusAccepted || got.DecisionID != m1.DecisionID {
		t.Fatalf("a denial overwrote an acceptance: %+v", got)
	}
	return m1
}

// ackAndDeadLetterWithEntries acknowledges m1's delivery and dead-letters
// m3's, each twice: the second time the delivery is gone.
func ackAndDeadLetterWithEntries(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	ds := lease(t, s, "ke-dra", 1, time.Minute, base)
	if len(ds) != 1 {
		t.Fatalf("leased %d", len(ds))
	}
	if err := s.Ack(ctx, "ke-dra", "d1", base); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := s.Ack(ctx, "ke-dra", "d1", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Ack: %v, want ErrNotFound", err)
	}
	m3 := message("unhcr", "m3", "ke-dra", base)
	accept(t, s, m3, "d3")
	if err := s.DeadLetter(ctx, "ke-dra", "d3", base); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if err := s.DeadLetter(ctx, "ke-dra", "d3", base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeadLetter: %v, want ErrNotFound", err)
	}
}

// checkEntryOrder checks that the chain holds the entries of the changes
// that happened, in their order, and none of those that did not.
func checkEntryOrder(t *testing.T, es []audit.Entry) {
	t.Helper()
	want := []string{"accepted:m1", "consent_withdrawn:m1", "denied:m2", "denied:m1", "delivered:m1",
		"dead_lettered:m3", "policy_changed:", "forgotten:m1", "forgotten:m2", "forgotten:m3", "purged:m1", "purged:m3"}
	got := kinds(es)
	for _, id := range []string{"m1", "m3"} {
		if p, f := slices.Index(got, "purged:"+id), slices.Index(got, "forgotten:"+id); p > f {
			t.Errorf("chain %v: %s forgotten before its purge", got, id)
		}
	}
	slices.Sort(got[7:]) // due together, in either order
	if !slices.Equal(got, want) {
		t.Fatalf("chain %v\nwant  %v", got, want)
	}
}

// checkEntryFields checks what the entries say: their place in the chain,
// and what they were built from (the message m1 for its acceptance, its
// delivery for the delivered entry, each message for its purge).
func checkEntryFields(t *testing.T, es []audit.Entry, m1 *store.Message) {
	t.Helper()
	for i, e := range es {
		if e.Replica != replica || e.Seq != uint64(i+1) || e.Time.IsZero() {
			t.Errorf("entry %d: replica %q seq %d time %v", i, e.Replica, e.Seq, e.Time)
		}
	}
	if es[0].DecisionID != m1.DecisionID || !slices.Equal(es[0].Categories, []string{"subject.names", "record.*"}) {
		t.Errorf("acceptance entry %+v: decision or cleaned categories", es[0])
	}
	sum := sha256.Sum256([]byte("jwe.d1"))
	if d := es[4]; d.To != "ke-dra" || d.From != "unhcr" || d.DecisionID != m1.DecisionID ||
		d.Purpose != m1.Purpose || d.PayloadSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("delivered entry %+v: not built from its delivery and message", d)
	}
	for _, e := range es[7:] {
		if e.DecisionID != "decision-"+e.MessageID || e.To != "ke-dra" || e.From != "unhcr" || e.Purpose != m1.Purpose {
			t.Errorf("%s entry %+v: not built from its message", e.Kind, e)
		}
	}
}

// change is a change with an audit entry, with what must not have happened
// when it failed and what must have when it succeeded.
type change struct {
	name string
	// setup prepares the store; do is the change; the kind of its entry.
	setup func(t *testing.T, s store.Store)
	do    func(s store.Store) error
	kind  string
	// absent checks that the change did not happen; present that it did.
	absent, present func(t *testing.T, s store.Store)
}

// bothOrNeither are the changes with an audit entry.
var bothOrNeither = []change{
	{
		name: "Accept",
		do: func(s store.Store) error {
			m := message("unhcr", "m1", "ke-dra", base)
			_, err := s.Accept(context.Background(), m, []store.Delivery{delivery("d1", "ke-dra", base)}, acceptEntry(m))
			return err
		},
		kind: audit.KindAccepted,
		absent: func(t *testing.T, s store.Store) {
			if _, err := s.Message(context.Background(), "unhcr", "m1"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("message after a failed Accept: %v, want ErrNotFound", err)
			}
			if n := depth(t, s, "ke-dra"); n != 0 {
				t.Errorf("a failed Accept queued %d", n)
			}
		},
		present: func(t *testing.T, s store.Store) {
			get(t, s, "unhcr", "m1")
			if n := depth(t, s, "ke-dra"); n != 1 {
				t.Errorf("Depth %d after Accept", n)
			}
		},
	},
	{
		name: "RecordDenial",
		do: func(s store.Store) error {
			m := message("unhcr", "m1", "ke-dra", base)
			return s.RecordDenial(context.Background(), m, denialEntry(m))
		},
		kind: audit.KindDenied,
		absent: func(t *testing.T, s store.Store) {
			if _, err := s.Message(context.Background(), "unhcr", "m1"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("record after a failed denial: %v, want ErrNotFound", err)
			}
		},
		present: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusDenied {
				t.Errorf("status %q after RecordDenial", m.Status)
			}
		},
	},
	{
		name:  "Ack",
		setup: func(t *testing.T, s store.Store) { accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1") },
		do:    func(s store.Store) error { return s.Ack(context.Background(), "ke-dra", "d1", base) },
		kind:  audit.KindDelivered,
		absent: func(t *testing.T, s store.Store) {
			if _, err := s.Delivery(context.Background(), "ke-dra", "d1"); err != nil {
				t.Errorf("delivery after a failed Ack: %v", err)
			}
			if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusAccepted {
				t.Errorf("status %q after a failed Ack", m.Status)
			}
		},
		present: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusDelivered {
				t.Errorf("status %q after Ack", m.Status)
			}
		},
	},
	{
		name:  "DeadLetter",
		setup: func(t *testing.T, s store.Store) { accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1") },
		do:    func(s store.Store) error { return s.DeadLetter(context.Background(), "ke-dra", "d1", base) },
		kind:  audit.KindDeadLettered,
		absent: func(t *testing.T, s store.Store) {
			if dl := deadLetterIDs(t, s); len(dl) != 0 {
				t.Errorf("dead letters after a failed DeadLetter: %v", dl)
			}
			if n := depth(t, s, "ke-dra"); n != 1 {
				t.Errorf("Depth %d after a failed DeadLetter", n)
			}
		},
		present: func(t *testing.T, s store.Store) {
			if dl := deadLetterIDs(t, s); !slices.Equal(dl, []string{"d1"}) {
				t.Errorf("dead letters %v after DeadLetter", dl)
			}
		},
	},
	{
		name: "Purge",
		setup: func(t *testing.T, s store.Store) {
			m := message("unhcr", "m1", "ke-dra", base)
			m.Expires = base.Add(60 * 24 * time.Hour) // the metadata outlives the payloads
			accept(t, s, m, "d1")
		},
		do: func(s store.Store) error {
			_, err := s.Purge(context.Background(), base.Add(31*24*time.Hour))
			return err
		},
		kind: audit.KindPurged,
		absent: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); m.Purged {
				t.Error("purged by a failed Purge")
			}
			if n := depth(t, s, "ke-dra"); n != 1 {
				t.Errorf("Depth %d after a failed Purge", n)
			}
		},
		present: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); !m.Purged {
				t.Error("not purged")
			}
		},
	},
	{
		name: "ForgetDenial",
		setup: func(t *testing.T, s store.Store) {
			m := message("unhcr", "m1", "ke-dra", base)
			m.RetentionDays = 0
			if err := s.RecordDenial(context.Background(), m, denialEntry(m)); err != nil {
				t.Fatal(err)
			}
		},
		do: func(s store.Store) error {
			_, err := s.Purge(context.Background(), base.Add(time.Hour))
			return err
		},
		kind: audit.KindForgotten,
		absent: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusDenied {
				t.Errorf("status %q after a failed Purge", m.Status)
			}
			if _, err := s.MessageTo(context.Background(), "ke-dra", "m1"); err != nil {
				t.Errorf("MessageTo after a failed Purge: %v", err)
			}
		},
		present: func(t *testing.T, s store.Store) { gone(t, s, "unhcr", "m1", "ke-dra") },
	},
	{
		name: "ForgetPurged",
		setup: func(t *testing.T, s store.Store) {
			m := message("unhcr", "m1", "ke-dra", base)
			m.Expires = base.Add(60 * 24 * time.Hour)
			accept(t, s, m, "d1")
			if got := purge(t, s, base.Add(30*24*time.Hour)); len(got) != 1 || !got[0].Payloads || got[0].Forgotten {
				t.Fatalf("purge: %+v", got)
			}
		},
		do: func(s store.Store) error {
			_, err := s.Purge(context.Background(), base.Add(60*24*time.Hour))
			return err
		},
		kind: audit.KindForgotten,
		absent: func(t *testing.T, s store.Store) {
			if m := get(t, s, "unhcr", "m1"); !m.Purged {
				t.Error("not purged")
			}
		},
		present: func(t *testing.T, s store.Store) { gone(t, s, "unhcr", "m1", "ke-dra") },
	},
	{
		name: "Append",
		do: func(s store.Store) error {
			_, err := s.Append(context.Background(), replica, policyEntry())
			return err
		},
		kind:    audit.KindPolicyChanged,
		absent:  func(*testing.T, store.Store) {},
		present: func(*testing.T, store.Store) {},
	},
}

// A change that fails mid-way leaves neither itself nor its entry; the same
// change once the fault is gone leaves both.
func testBothOrNeither(t *testing.T, open opener, fault func(*testing.T, bool), tc change) {
	s := openStore(t, open)
	if tc.setup != nil {
		tc.setup(t, s)
	}
	before := chain(t, s)
	fault(t, true)
	err := tc.do(s)
	fault(t, false)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("%s with the fault: err = %v, want ErrUnavailable", tc.name, err)
	}
	if errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("%s with the fault: the outcome is known (nothing was written): %v", tc.name, err)
	}
	tc.absent(t, s)
	if after := chain(t, s); len(after) != len(before) {
		t.Fatalf("%s failed but its entry was appended: %v", tc.name, kinds(after[len(before):]))
	}
	if err := tc.do(s); err != nil {
		t.Fatalf("%s without the fault: %v", tc.name, err)
	}
	tc.present(t, s)
	after := chain(t, s)
	if len(after) != len(before)+1 || after[len(before)].Kind != tc.kind {
		t.Fatalf("%s: chain grew by %v, want one %s entry", tc.name, kinds(after[len(before):]), tc.kind)
	}
}

// Ping writes: a store that cannot write fails it within two seconds, and
// passes again once it can.
func testPingWrites(t *testing.T, open opener, fault func(*testing.T, bool)) {
	ctx := context.Background()
	s := openStore(t, open)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	waitPing := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := s.Ping(ctx)
			if (err == nil) == want {
				if err != nil && !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("Ping: %v, want ErrUnavailable", err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Ping still %v after 2 s", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fault(t, true)
	waitPing(false)
	fault(t, false)
	waitPing(true)
}

// A delivery record that cannot be decoded is quarantined: the recipient's
// other deliveries and other recipients' still lease, and it is counted once.
func testQuarantine(t *testing.T, open opener, opts contractOptions) {
	ctx := context.Background()
	s := open(t)
	for i, d := range []struct{ id, to string }{{"a1", "ke-a"}, {"a2", "ke-a"}, {"a3", "ke-a"}, {"b1", "ke-b"}} {
		accept(t, s, message("unhcr", "m"+d.id, d.to, base.Add(time.Duration(i)*time.Millisecond)), d.id)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	opts.Corrupt(t, "ke-a", "a2")
	s = openStore(t, open)
	if got := ids(lease(t, s, "ke-a", 10, time.Minute, base.Add(time.Second))); !slices.Equal(got, []string{"a1", "a3"}) {
		t.Errorf("ke-a leased %v, want [a1 a3]", got)
	}
	if got := ids(lease(t, s, "ke-b", 10, time.Minute, base.Add(time.Second))); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("ke-b leased %v, want [b1]", got)
	}
	if n := opts.Quarantined(t); n != 1 {
		t.Errorf("quarantined %d, want 1", n)
	}
	if n := depth(t, s, "ke-a"); n != 2 {
		t.Errorf("ke-a depth %d, want 2 (the damaged record left its queue)", n)
	}
	if _, err := s.Delivery(ctx, "ke-a", "a2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the damaged delivery: %v, want ErrNotFound", err)
	}
	if got := ids(lease(t, s, "ke-a", 10, time.Minute, base.Add(time.Hour))); !slices.Equal(got, []string{"a1", "a3"}) {
		t.Errorf("ke-a leased %v later, want [a1 a3]", got)
	}
	if n := opts.Quarantined(t); n != 1 {
		t.Errorf("quarantined %d after a second lease, want 1", n)
	}
}
