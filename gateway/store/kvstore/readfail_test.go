package kvstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kvstore"
)

// failingReads is a driver whose reads of one bucket fail while armed, as
// a Redis read does when its primary freezes (i/o timeout).
type failingReads struct {
	kv.DB
	bucket string
	armed  atomic.Bool
}

var errRead = errors.New("read tcp: i/o timeout (injected)")

func (d *failingReads) Update(ctx context.Context, fn func(kv.Tx) error) error {
	return d.DB.Update(ctx, func(tx kv.Tx) error { return fn(&failingTx{Tx: tx, d: d}) })
}

type failingTx struct {
	kv.Tx
	d *failingReads
}

func (t *failingTx) Get(bucket string, key []byte) ([]byte, bool, error) {
	if bucket == t.d.bucket && t.d.armed.Load() {
		return nil, false, errRead
	}
	return t.Tx.Get(bucket, key)
}

// A read that fails while an acceptance checks its delivery ids is the
// store failing (503 unavailable, retried), not a delivery id already
// queued: seen in the failover soak with the primary frozen, answered 500
// and never retried; and the journal, making a change again, took it for
// a change that cannot be made again and dropped it.
func TestAcceptReadFailureIsUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, bucket := range []string{"dead", "deliveries"} {
		t.Run(bucket, func(t *testing.T) {
			db, err := boltkv.Open(filepath.Join(t.TempDir(), "x.db"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			d := &failingReads{DB: db, bucket: bucket}
			s := kvstore.New(d, kvstore.Options{Replica: "gw-1"})
			defer s.Close()
			d.armed.Store(true)
			_, err = s.Accept(ctx, msg("m1", "ke-dra"), []store.Delivery{{ID: "d-m1", Envelope: []byte("jwe")}}, entry("m1"))
			if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, errRead) {
				t.Fatalf("Accept with a failing read of %s: %v, want unavailable", bucket, err)
			}
			d.armed.Store(false)
			if _, err := s.Accept(ctx, msg("m1", "ke-dra"), []store.Delivery{{ID: "d-m1", Envelope: []byte("jwe")}}, entry("m1")); err != nil {
				t.Fatalf("the retry: %v", err)
			}
		})
	}
}
