package kv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store/kv"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/redistest"
	"github.com/xborder/xborder/gateway/store/sentineltest"
)

var (
	_ kv.DB = (*boltkv.DB)(nil)
	_ kv.DB = (*rediskv.DB)(nil)
)

func openBolt(t testing.TB) *boltkv.DB {
	db, err := boltkv.Open(filepath.Join(t.TempDir(), "kv.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openRedis(t testing.TB, url, name string) *rediskv.DB {
	t.Helper()
	db, err := rediskv.Open(ctx, url, name)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestContractBolt(t *testing.T) {
	runSuite(t, func(t *testing.T) kv.DB { return openBolt(t) }, suiteOptions{Serial: true})
}

// One server for the suite; each test its own namespace.
func TestContractRedis(t *testing.T) {
	url := redistest.Start(t)
	var n atomic.Int32
	runSuite(t, func(t *testing.T) kv.DB {
		return openRedis(t, url, fmt.Sprint("s", n.Add(1)))
	}, suiteOptions{})
}

func TestTwoProcesses(t *testing.T) {
	if isChild() {
		db := openRedis(t, os.Getenv("REDISKV_URL"), "two")
		defer db.Close()
		child(t, db)
		return
	}
	url := redistest.Start(t)
	db := openRedis(t, url, "two")
	defer db.Close()
	twoProcesses(t, db, "REDISKV_URL="+url)
}

// The conformance suite through Sentinel, each commit waiting for a replica.
func TestSentinelContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group of six redis-server processes")
	}
	g := sentineltest.Start(t)
	var n atomic.Int32
	runSuite(t, func(t *testing.T) kv.DB {
		db, err := rediskv.Open(ctx, g.URL(), fmt.Sprint("s", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		if db.AckReplicas() != 1 {
			t.Fatalf("a redis-sentinel:// store waits for %d replicas by default, want 1", db.AckReplicas())
		}
		return db
	}, suiteOptions{})
}

func BenchmarkUpdate(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		db := openBolt(b)
		defer db.Close()
		benchUpdate(b, db)
	})
	b.Run("redis", func(b *testing.B) {
		db := openRedis(b, redistest.Start(b), "bench")
		defer db.Close()
		benchUpdate(b, db)
	})
}

// The cost of waiting for a replica: the same commits with AckReplicas 0
// and 1 on one group.
func BenchmarkSentinelUpdate(b *testing.B) {
	g := sentineltest.Start(b)
	for _, ack := range []int{0, 1} {
		b.Run(fmt.Sprint("ack", ack), func(b *testing.B) {
			db, err := rediskv.OpenURL(ctx, g.URL(), rediskv.Options{Name: fmt.Sprint("bench", ack), AckReplicas: ack})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			benchUpdate(b, db)
		})
	}
}
