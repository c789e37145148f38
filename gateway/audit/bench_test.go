package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// BenchmarkAppend records entries on the bolt store from parallel callers (as the
// exchange does) and reports the file size per entry.
func BenchmarkAppend(b *testing.B) {
	path := filepath.Join(b.TempDir(), "xborder.db")
	bk, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l := newLog(b, bk, "gw-bench", signingKey(b), time.Now)
	e := sample(l, audit.KindDelivered, "ref-bench", "payload")
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16) // many requests at once share fsyncs through db.Batch
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Record(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	n, _, _ := bk.Head(ctx, "gw-bench")
	bk.Close()
	if n == 0 {
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	// The file grows in steps; the pages the entries occupy are the cost.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var used int
	db.View(func(tx *bbolt.Tx) error {
		s := tx.Bucket([]byte("chain")).Stats() // gw-bench is the only chain
		used = s.BranchAlloc + s.LeafAlloc
		return nil
	})
	b.ReportMetric(float64(used)/float64(n), "page-bytes/entry")
	b.ReportMetric(float64(st.Size())/float64(n), "file-bytes/entry")
}
