package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
)

// corruptDelivery overwrites a queued delivery record with bytes that are
// not one.
func corruptDelivery(t *testing.T, path, recipient, id string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		d, k := tx.Bucket([]byte("deliveries")), []byte(recipient+"\x00"+id)
		if d == nil || d.Get(k) == nil {
			return errors.New("no such delivery to corrupt")
		}
		return d.Put(k, []byte("\xffnot a delivery record"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A file of the earlier layout is refused, not read as empty.
func TestOpenRefusesTheEarlierLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("chains")); return err })
	db.Close()
	if s, err := bolt.Open(path, bolt.Options{}); err == nil || !strings.Contains(err.Error(), "earlier version") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open of the earlier layout: %v", err)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "xborder.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(tc.path), fi.Mode(), tc.mode)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	held := filepath.Join(dir, "held.db")
	s, err := bolt.Open(held, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
	}{
		{"file locked by another open", held},
		{"parent is a file", filepath.Join(notDir, "x.db")},
		{"not a bbolt file", garbage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := bolt.Open(tc.path, bolt.Options{Timeout: 50 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Open took %v", d)
			}
		})
	}
	if _, err := bolt.Open("", bolt.Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func TestPingCanceled(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with canceled context: %v", err)
	}
}

// After a purge and a compaction, the purged envelopes are nowhere in the
// file, not even in freed pages; envelopes still kept are.
func TestCompactLeavesNoPurgedBytes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := bolt.Open(path, bolt.Options{Replica: "gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	accept := func(id string, days int, env []byte) {
		m := &store.Message{From: "UN-UNICEF", ID: id, To: "KZ-MJ", Type: "t", Purpose: "p", Status: store.StatusAccepted,
			JWSSHA256: "x", RetentionDays: days, CreatedAt: now, UpdatedAt: now, Expires: now.Add(time.Hour)}
		if _, err := s.Accept(ctx, m, []store.Delivery{{ID: "d-" + id, Recipient: "KZ-MJ", MessageFrom: "UN-UNICEF", MessageID: id, Envelope: env, CreatedAt: now, VisibleAt: now}}); err != nil {
			t.Fatal(err)
		}
	}
	purgedNeedle := bytes.Repeat([]byte("PURGEDPAYLOAD-"), 300)
	keptNeedle := bytes.Repeat([]byte("KEPTPAYLOAD-"), 300)
	accept("m1", 90, purgedNeedle)
	accept("m2", 400, keptNeedle)
	if p, err := s.Purge(ctx, now.Add(91*24*time.Hour)); err != nil || len(p) != 1 {
		t.Fatalf("purge: %v %v", p, err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, purgedNeedle[:64]) {
		t.Error("purged payload bytes remain in the file after compaction")
	}
	if !bytes.Contains(raw, keptNeedle[:64]) {
		t.Error("the scan cannot see kept payloads: it proves nothing")
	}
	// The store works on after the swap.
	if d, err := s.Delivery(ctx, "KZ-MJ", "d-m2"); err != nil || !bytes.Equal(d.Envelope, keptNeedle) {
		t.Fatalf("after compaction: %v", err)
	}
	accept("m3", 90, []byte("after"))
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// A batch in which no change wrote is not committed: bbolt would sync the
// file twice for an empty commit (a lease of an empty queue, an
// acknowledgement of a delivery not there). A change that writes still
// commits.
func TestNothingWrittenCommitsNothing(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.Options{Replica: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	txid := func() int {
		var id int
		err := s.DB().(*boltkv.DB).Bolt(func(b *bbolt.DB) error {
			return b.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := txid()
	if ds, err := s.Lease(ctx, "KZ-MJ", 10, time.Minute, time.Now()); err != nil || len(ds) != 0 {
		t.Fatalf("Lease of an empty queue: %v, %v", ds, err)
	}
	if err := s.Ack(ctx, "KZ-MJ", "no-such-delivery", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Ack of a delivery not there: %v", err)
	}
	if after := txid(); after != before {
		t.Errorf("changes that wrote nothing committed %d transactions", after-before)
	}
	if _, err := s.Append(ctx, "gw-1", audit.Entry{Kind: audit.KindPolicyChanged}); err != nil {
		t.Fatal(err)
	}
	if after := txid(); after != before+1 {
		t.Errorf("an append committed %d transactions, want 1", after-before)
	}
}
