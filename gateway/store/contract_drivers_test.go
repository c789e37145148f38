package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// perTest is what the stores of one test share: where their data is, the
// fault switch and the quarantine count.
type perTest struct {
	where       string
	fault       atomic.Bool
	quarantined atomic.Int64
}

// injected is the Fault of the stores of p.
func (p *perTest) injected(string) error {
	if p.fault.Load() {
		return errors.New("injected: audit append failed")
	}
	return nil
}

func (p *perTest) onQuarantine(string) { p.quarantined.Add(1) }

type tests struct {
	mu  sync.Mutex
	m   map[*testing.T]*perTest
	new func(t *testing.T) string
}

func (ts *tests) of(t *testing.T) *perTest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	p, ok := ts.m[t]
	if !ok {
		p = &perTest{where: ts.new(t)}
		ts.m[t] = p
	}
	return p
}

func (ts *tests) common(o contractOptions) contractOptions {
	o.Fault = func(t *testing.T, fail bool) { ts.of(t).fault.Store(fail) }
	o.Quarantined = func(t *testing.T) int { return int(ts.of(t).quarantined.Load()) }
	return o
}

// The embedded store as the gateway opens it (bolt.Open: the file's page
// check, free space in Ping).
func TestContractBolt(t *testing.T) {
	ts := &tests{m: map[*testing.T]*perTest{}, new: func(t *testing.T) string {
		return filepath.Join(t.TempDir(), "xborder.db")
	}}
	runContract(t, func(t *testing.T) store.Store {
		p := ts.of(t)
		s, err := bolt.Open(p.where, bolt.Options{Replica: replica, Fault: p.injected, OnQuarantine: p.onQuarantine})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}, ts.common(contractOptions{
		RawContains: func(t *testing.T, needle []byte) bool { return boltContains(t, ts.of(t).where, needle) },
		Footprint:   func(t *testing.T) Footprint { return boltFootprint(t, ts.of(t).where) },
		Corrupt: func(t *testing.T, recipient, id string) {
			db, err := bbolt.Open(ts.of(t).where, 0o600, &bbolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bbolt.Tx) error {
				b, k := tx.Bucket([]byte("deliveries")), []byte(recipient+"\x00"+id)
				if b == nil || b.Get(k) == nil {
					return errors.New("no such delivery to corrupt")
				}
				return b.Put(k, []byte("\xffnot a delivery record"))
			})
			if err != nil {
				t.Fatal(err)
			}
		},
	}))
}

// boltContains reports whether needle occurs in any bucket name, key or
// value of the bbolt file at path.
func boltContains(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s for the raw scan: %v", path, err)
	}
	defer db.Close()
	found := false
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			found = found || bytes.Contains(name, needle)
			return b.ForEach(func(k, v []byte) error {
				found = found || bytes.Contains(k, needle) || bytes.Contains(v, needle)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// The shared store as the gateway opens it (redis.Open: durability
// required), each test under its own prefix on one server.
func TestContractRedis(t *testing.T) {
	url := redistest.Start(t)
	var n atomic.Int32
	ts := &tests{m: map[*testing.T]*perTest{}, new: func(*testing.T) string { return fmt.Sprint("s", n.Add(1)) }}
	client := func(t *testing.T) *goredis.Client {
		o, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		c := goredis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	runContract(t, func(t *testing.T) store.Store {
		p := ts.of(t)
		s, err := redis.Open(context.Background(), url, redis.Options{Prefix: p.where + ":", RequireDurable: true,
			Replica: replica, Fault: p.injected, OnQuarantine: p.onQuarantine})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}, ts.common(contractOptions{
		Footprint: func(t *testing.T) Footprint {
			return redisFootprint(t, client(t), "{"+ts.of(t).where+"}")
		},
		RawContains: func(t *testing.T, needle []byte) bool {
			return redisContains(t, client(t), "{"+ts.of(t).where+"}", needle)
		},
		Corrupt: func(t *testing.T, recipient, id string) {
			c, h, k := client(t), "{"+ts.of(t).where+"}:h:deliveries", recipient+"\x00"+id
			v, err := c.HGet(context.Background(), h, k).Result()
			if err != nil {
				t.Fatalf("no such delivery to corrupt: %v", err)
			}
			version, _, _ := strings.Cut(v, ":")
			if err := c.HSet(context.Background(), h, k, version+":\xffnot a delivery record").Err(); err != nil {
				t.Fatal(err)
			}
		},
	}))
}

func BenchmarkStore(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		s, err := bolt.Open(filepath.Join(b.TempDir(), "bench.db"), bolt.Options{Replica: replica})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchmarkStore(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		s, err := redis.Open(context.Background(), redistest.Start(b), redis.Options{Replica: replica, RequireDurable: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchmarkStore(b, s)
	})
}

// redisContains reports whether needle occurs in any key, hash field or
// value, or sorted-set member of the namespace.
func redisContains(t *testing.T, c *goredis.Client, namespace string, needle []byte) bool {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, namespace+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := string(needle)
	for _, k := range keys {
		if strings.Contains(k, n) {
			return true
		}
		switch typ := c.Type(ctx, k).Val(); typ {
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				if strings.Contains(f, n) || strings.Contains(v, n) {
					return true
				}
			}
		case "zset":
			for _, m := range c.ZRange(ctx, k, 0, -1).Val() {
				if strings.Contains(m, n) {
					return true
				}
			}
		case "string":
			if strings.Contains(c.Get(ctx, k).Val(), n) {
				return true
			}
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
	}
	return false
}

// audit are the buckets of the audit chains.
var auditBuckets = map[string]bool{"chain": true, "heads": true, "checkpoints": true}

// boltFootprint compacts a copy of the file at path (as the gateway
// compacts the store after a purge) and counts what the copy holds.
func boltFootprint(t *testing.T, path string) Footprint {
	t.Helper()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := bbolt.Open(filepath.Join(t.TempDir(), "compacted.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := bbolt.Compact(dst, src, 4<<20); err != nil {
		t.Fatal(err)
	}
	var fp Footprint
	err = dst.View(func(tx *bbolt.Tx) error {
		fp.Bytes = tx.Size()
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			st := b.Stats()
			switch {
			case auditBuckets[string(name)]:
				fp.AuditBytes += int64(st.BranchAlloc + st.LeafAlloc)
			case string(name) == "messages":
				fp.Records = st.KeyN
				fallthrough
			default:
				fp.Keys += st.KeyN
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// redisFootprint counts the fields of the namespace's hashes and their
// memory (MEMORY USAGE).
func redisFootprint(t *testing.T, c *goredis.Client, namespace string) Footprint {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, namespace+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var fp Footprint
	for _, k := range keys {
		size := c.MemoryUsage(ctx, k, 0).Val()
		fp.Bytes += size
		bucket := k[strings.LastIndexByte(k, ':')+1:]
		if auditBuckets[bucket] {
			fp.AuditBytes += size
			continue
		}
		if strings.HasPrefix(k, namespace+":h:") {
			n := int(c.HLen(ctx, k).Val())
			fp.Keys += n
			if bucket == "messages" {
				fp.Records = n
			}
		}
	}
	return fp
}
