package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// The audit log kept in the store's file: an acceptance, a denial, an
// acknowledgement or a dead letter and its entry are committed together or
// not at all, and survive a reopen and a compaction.
func TestTransactionsWithAuditEntries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "xborder.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	log, err := audit.NewBoltOn(s, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	msg := func(id string) *store.Message {
		return &store.Message{From: "ke-mfa", ID: id, To: "ke-cr", Type: "identity.verification.request",
			Purpose: "repatriation", Status: store.StatusAccepted, CreatedAt: now, UpdatedAt: now,
			Expires: now.Add(time.Hour), Answer: []byte(`{}`)}
	}
	ds := func(id string) []store.Delivery {
		return []store.Delivery{{ID: "d-" + id, Recipient: "ke-cr", Envelope: []byte("jwe"), CreatedAt: now, VisibleAt: now}}
	}
	entry := func(kind, id string) audit.Entry {
		return audit.Entry{Kind: kind, MessageID: id, From: "ke-mfa", To: "ke-cr", Time: now}
	}
	appendEntry := func(e audit.Entry, calls *int) func(*bbolt.Tx) error {
		return func(tx *bbolt.Tx) error {
			*calls++
			_, err := audit.AppendTx(tx, "r1", e)
			return err
		}
	}
	head := func() uint64 {
		t.Helper()
		n, _, err := log.Head(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	var calls int
	if _, err := s.AcceptTx(ctx, msg("m1"), ds("m1"), appendEntry(entry(audit.KindAccepted, "m1"), &calls)); err != nil {
		t.Fatal(err)
	}
	if calls == 0 || head() != 1 {
		t.Fatalf("after an acceptance: also ran %d times, %d entries; want ≥1 and 1", calls, head())
	}

	// The entry fails: the acceptance is rolled back with it.
	boom := errors.New("boom")
	_, err = s.AcceptTx(ctx, msg("m2"), ds("m2"), func(tx *bbolt.Tx) error {
		if _, err := audit.AppendTx(tx, "r1", entry(audit.KindAccepted, "m2")); err != nil {
			return err
		}
		return boom
	})
	if err == nil {
		t.Fatal("AcceptTx whose also fails: no error")
	}
	if _, err := s.Message(ctx, "ke-mfa", "m2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("message of a failed AcceptTx: %v, want ErrNotFound", err)
	}
	if n, _ := s.Depths(ctx); n["ke-cr"] != 1 {
		t.Fatalf("queue depth after a failed AcceptTx = %d, want 1", n["ke-cr"])
	}
	if head() != 1 {
		t.Fatalf("entries after a failed AcceptTx = %d, want 1", head())
	}

	// A duplicate writes nothing and does not run also.
	calls = 0
	if _, err := s.AcceptTx(ctx, msg("m1"), ds("m1"), appendEntry(entry(audit.KindAccepted, "m1"), &calls)); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate AcceptTx: %v, want ErrDuplicate", err)
	}
	if calls != 0 || head() != 1 {
		t.Fatalf("duplicate: also ran %d times, %d entries; want 0 and 1", calls, head())
	}

	// A denial of an id accepted before is not recorded, but audited.
	denied := msg("m1")
	denied.Status = store.StatusDenied
	if err := s.RecordDenialTx(ctx, denied, appendEntry(entry(audit.KindDenied, "m1"), &calls)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Message(ctx, "ke-mfa", "m1"); err != nil || got.Status != store.StatusAccepted {
		t.Fatalf("accepted message after a later denial: %v %v", got, err)
	}
	if head() != 2 {
		t.Fatalf("entries after the denial = %d, want 2", head())
	}

	// An acknowledgement whose entry fails stays undone; one whose entry
	// is appended takes the delivery and records it, with its message.
	err = s.AckTx(ctx, "ke-cr", "d-m1", now, func(*bbolt.Tx, store.Delivery, *store.Message) error { return boom })
	if err == nil {
		t.Fatal("AckTx whose also fails: no error")
	}
	if _, err := s.Delivery(ctx, "ke-cr", "d-m1"); err != nil {
		t.Fatalf("delivery after a failed AckTx: %v", err)
	}
	var acked store.Delivery
	var ackedMsg *store.Message
	err = s.AckTx(ctx, "ke-cr", "d-m1", now, func(tx *bbolt.Tx, d store.Delivery, m *store.Message) error {
		acked, ackedMsg = d, m
		_, err := audit.AppendTx(tx, "r1", entry(audit.KindDelivered, "m1"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if acked.MessageID != "m1" || string(acked.Envelope) != "jwe" || ackedMsg == nil || ackedMsg.Status != store.StatusDelivered {
		t.Fatalf("AckTx gave also %+v, %+v", acked, ackedMsg)
	}
	if _, err := s.Delivery(ctx, "ke-cr", "d-m1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delivery after AckTx: %v, want ErrNotFound", err)
	}
	if head() != 3 {
		t.Fatalf("entries after the ack = %d, want 3", head())
	}

	// Dead-lettering likewise: undone with a failing entry, done with one.
	if _, err := s.AcceptTx(ctx, msg("m4"), ds("m4"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetterTx(ctx, "ke-cr", "d-m4", now, func(*bbolt.Tx, store.Delivery, *store.Message) error { return boom }); err == nil {
		t.Fatal("DeadLetterTx whose also fails: no error")
	}
	if dl, _ := s.DeadLetters(ctx); len(dl) != 0 {
		t.Fatalf("dead letters after a failed DeadLetterTx: %d", len(dl))
	}
	err = s.DeadLetterTx(ctx, "ke-cr", "d-m4", now, func(tx *bbolt.Tx, d store.Delivery, m *store.Message) error {
		if d.MessageID != "m4" || m == nil || m.Status != store.StatusDeadLettered {
			return errors.New("wrong delivery or message given to also")
		}
		_, err := audit.AppendTx(tx, "r1", entry(audit.KindDeadLettered, "m4"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if dl, _ := s.DeadLetters(ctx); len(dl) != 1 || head() != 4 {
		t.Fatalf("after DeadLetterTx: %d dead letters, %d entries; want 1 and 4", len(dl), head())
	}

	// Compaction swaps the file under the log; reopening keeps both.
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcceptTx(ctx, msg("m3"), ds("m3"), appendEntry(entry(audit.KindAccepted, "m3"), &calls)); err != nil {
		t.Fatal(err)
	}
	if head() != 5 {
		t.Fatalf("entries after a compaction and an acceptance = %d, want 5", head())
	}
	closed = true
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := audit.OpenBolt(path, audit.BoltOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var kinds []string
	if err := ro.Entries(ctx, "r1", 1, func(e audit.Entry) error { kinds = append(kinds, e.Kind+":"+e.MessageID); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted:m1", "denied:m1", "delivered:m1", "dead_lettered:m4", "accepted:m3"}
	if len(kinds) != len(want) {
		t.Fatalf("entries in the file = %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("entries in the file = %v, want %v", kinds, want)
		}
	}
}
