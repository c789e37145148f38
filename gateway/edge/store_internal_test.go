package edge

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
)

// The pending index's binary form reads back what was written, and a
// store written before it (JSON values) still reads.
func TestDueForms(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.UTC)
	want := Due{ID: "0193a1b2-0000-7000-8000-000000000001", NextAt: now.Add(time.Second), Exp: 1796000000.25,
		MaybeReceived: true, CreatedAt: now}
	got, err := decodeDue([]byte(want.ID), encodeDue(want))
	if err != nil || got != want {
		t.Fatalf("binary: got %+v, %v; want %+v", got, err, want)
	}
	old, _ := json.Marshal(want)
	if got, err := decodeDue([]byte(want.ID), old); err != nil || !got.NextAt.Equal(want.NextAt) || got.Exp != want.Exp || !got.MaybeReceived {
		t.Fatalf("JSON: got %+v, %v; want %+v", got, err, want)
	}
	if _, err := decodeDue([]byte(want.ID), []byte("\\x01garbage")); err == nil {
		t.Fatal("a damaged value decoded")
	}
}

// What is final is purged once its retention has passed, with an audit
// entry each, and nothing else: a queued message, a delivery the local
// inbox still offers and the audit chain stay. A store written before the
// retention index gets it at open.
func TestRetentionPurge(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "edge.db")
	st, err := OpenStore(path, "edge-T", clock)
	if err != nil {
		t.Fatal(err)
	}
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	enqueue := func(id string) {
		t.Helper()
		o := &Outgoing{ID: id, To: "KZ-MJ", Type: "identity.verification.request", Purpose: "identity-verification",
			Status: StatusQueued, CreatedAt: now, UpdatedAt: now, Exp: float64(now.Unix() + 3600), JWS: []byte("jws"), Sealed: []byte("sealed"), NextAt: now}
		if _, _, err := st.Enqueue(o, "", "", audit.Entry{Kind: audit.KindQueued, MessageID: id, PayloadSHA256: digest}); err != nil {
			t.Fatal(err)
		}
	}
	accepted, queued, refused := "0193a1b2-0000-7000-8000-00000000000a", "0193a1b2-0000-7000-8000-00000000000b", "0193a1b2-0000-7000-8000-00000000000c"
	enqueue(accepted)
	enqueue(queued)
	enqueue(refused)
	finish := func(id, status string) {
		t.Helper()
		if _, err := st.Update(id, func(o *Outgoing) ([]audit.Entry, error) {
			o.Status, o.JWS, o.Sealed = status, nil, nil
			if status == StatusAccepted {
				o.Receipt = &Receipt{DecisionID: "d-1", JWS: "receipt"}
			}
			return []audit.Entry{{Kind: audit.KindAccepted, MessageID: id}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	finish(accepted, StatusAccepted)
	if err := st.MarkHanded("0193a1b2-0000-7000-8000-0000000000d1", nil, audit.Entry{Kind: audit.KindHandedOver}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkHanded("0193a1b2-0000-7000-8000-0000000000d2", []byte(`{"delivery_id":"0193a1b2-0000-7000-8000-0000000000d2"}`), audit.Entry{Kind: audit.KindHandedOver}); err != nil {
		t.Fatal(err)
	}
	if err := st.Quarantine(quarantined{DeliveryID: "0193a1b2-0000-7000-8000-0000000000e1", Reason: "bad", At: now}, audit.Entry{Kind: audit.KindQuarantined}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Hour)
	finish(refused, StatusRefused) // final an hour later: purged an hour later

	// A store from before the index: the index is rebuilt at open.
	if err := st.db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketRetention) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err = OpenStore(path, "edge-T", clock); err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	if n, err := st.PurgeRetention(t0); err != nil || n != 0 {
		t.Fatalf("purge at the moment they became final: %d, %v; want 0", n, err)
	}
	n, err := st.PurgeRetention(t0.Add(time.Minute))
	if err != nil || n != 4 {
		t.Fatalf("purge after the first: %d, %v; want 4 (a message, two markers, a quarantined delivery)", n, err)
	}
	if _, err := st.Outgoing(accepted); !errors.Is(err, errNotFound) {
		t.Errorf("accepted message after its retention: %v, want not found", err)
	}
	for _, id := range []string{queued, refused} {
		if o, err := st.Outgoing(id); err != nil {
			t.Errorf("%s: %v, want kept", id, err)
		} else if id == queued && (o.Sealed == nil || o.Status != StatusQueued) {
			t.Errorf("queued message changed: %+v", o)
		}
	}
	if st.Handed("0193a1b2-0000-7000-8000-0000000000d1") || st.Handed("0193a1b2-0000-7000-8000-0000000000e1") {
		t.Error("hand-over marker or quarantined delivery kept past retention")
	}
	if docs, _ := st.LocalInbox(10); len(docs) != 1 {
		t.Errorf("local inbox: %d deliveries, want the unacknowledged one kept", len(docs))
	}
	if n, err := st.PurgeRetention(t0.Add(2 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("second purge: %d, %v; want 1 (the refused message)", n, err)
	}
	if n, err := st.PurgeRetention(t0.Add(1000 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("third purge: %d, %v; want 0 (the queued message stays)", n, err)
	}
	var kinds []string
	var entries []audit.Entry
	if err := st.Entries(context.Background(), "edge-T", 0, func(e audit.Entry) error {
		entries = append(entries, e)
		if e.Kind == audit.KindForgotten || e.Kind == audit.KindPurged {
			kinds = append(kinds, e.Kind+":"+e.MessageID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Within one instant, in the index's order: markers, messages, quarantine.
	want := []string{"purged:", "purged:", "forgotten:" + accepted, "purged:", "forgotten:" + refused}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("purge entries %v, want %v", kinds, want)
	}
	if _, err := audit.Verify(entries, nil, nil); err != nil {
		t.Errorf("audit chain after the purges: %v", err)
	}
}
