package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/store/storetest"
)

func TestContract(t *testing.T) {
	var (
		mu          sync.Mutex
		paths       = map[*testing.T]string{}
		faults      = map[*testing.T]*atomic.Bool{}
		quarantined = map[*testing.T]*atomic.Int64{}
	)
	of := func(t *testing.T) (string, *atomic.Bool, *atomic.Int64) {
		mu.Lock()
		defer mu.Unlock()
		path, ok := paths[t]
		if !ok {
			path = filepath.Join(t.TempDir(), "state", "xborder.db")
			paths[t], faults[t], quarantined[t] = path, &atomic.Bool{}, &atomic.Int64{}
		}
		return path, faults[t], quarantined[t]
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		path, fault, q := of(t)
		s, err := bolt.Open(path, bolt.Options{
			Replica: storetest.Replica,
			// The append inside each change's transaction fails: the
			// whole transaction rolls back.
			Fault: func(string) error {
				if fault.Load() {
					return errors.New("injected: audit append failed")
				}
				return nil
			},
			OnQuarantine: func(string) { q.Add(1) },
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}, storetest.Options{
		RawContains: func(t *testing.T, needle []byte) bool { path, _, _ := of(t); return dbContains(t, path, needle) },
		Fault:       func(t *testing.T, fail bool) { _, f, _ := of(t); f.Store(fail) },
		Corrupt: func(t *testing.T, recipient, id string) {
			path, _, _ := of(t)
			corruptDelivery(t, path, recipient, id)
		},
		Quarantined: func(t *testing.T) int { _, _, q := of(t); return int(q.Load()) },
		Footprint:   func(t *testing.T) storetest.Footprint { path, _, _ := of(t); return footprint(t, path) },
	})
}

// footprint compacts a copy of the file at path (as the gateway compacts
// the store after a purge) and counts what the copy holds.
func footprint(t *testing.T, path string) storetest.Footprint {
	t.Helper()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer src.Close()
	dstPath := filepath.Join(t.TempDir(), "compacted.db")
	dst, err := bbolt.Open(dstPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := bbolt.Compact(dst, src, 4<<20); err != nil {
		t.Fatalf("compact: %v", err)
	}
	var fp storetest.Footprint
	var count func(b *bbolt.Bucket) int
	count = func(b *bbolt.Bucket) int {
		n := 0
		b.ForEach(func(k, v []byte) error {
			if v == nil && b.Bucket(k) != nil {
				n += count(b.Bucket(k))
			} else {
				n++
			}
			return nil
		})
		return n
	}
	err = dst.View(func(tx *bbolt.Tx) error {
		fp.Bytes = tx.Size()
		fp.Records = tx.Bucket([]byte("messages")).Stats().KeyN
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if string(name) == "chains" {
				st := b.Stats()
				fp.AuditBytes = int64(st.BranchAlloc + st.LeafAlloc)
				return nil
			}
			fp.Keys += count(b)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

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
		d := tx.Bucket([]byte("queues")).Bucket([]byte(recipient)).Bucket([]byte("deliveries"))
		if d.Get([]byte(id)) == nil {
			return errors.New("no such delivery to corrupt")
		}
		return d.Put([]byte(id), []byte("\xffnot a delivery record"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dbContains walks every bucket, key and value of the bbolt file at path,
// nested buckets included, and reports whether needle occurs in any of them.
func dbContains(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s for the raw scan: %v", path, err)
	}
	defer db.Close()
	found, items := false, 0
	var walk func(b *bbolt.Bucket) error
	walk = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			items++
			if bytes.Contains(k, needle) || bytes.Contains(v, needle) {
				found = true
			}
			if v == nil {
				if nested := b.Bucket(k); nested != nil {
					return walk(nested)
				}
			}
			return nil
		})
	}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if bytes.Contains(name, needle) {
				found = true
			}
			return walk(b)
		})
	})
	if err != nil {
		t.Fatalf("raw scan: %v", err)
	}
	if items == 0 {
		t.Fatal("raw scan saw no keys")
	}
	return found
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

func BenchmarkStore(b *testing.B) {
	s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), bolt.Options{Replica: storetest.Replica})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Benchmark(b, s)
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
