package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
	"github.com/xborder/xborder/gateway/store/storetest"
)

func TestContract(t *testing.T) {
	url := redistest.Start(t)
	var (
		mu          sync.Mutex
		prefixes    = map[*testing.T]string{}
		faults      = map[*testing.T]*atomic.Bool{}
		quarantined = map[*testing.T]*atomic.Int64{}
	)
	of := func(t *testing.T) (string, *atomic.Bool, *atomic.Int64) {
		mu.Lock()
		defer mu.Unlock()
		prefix, ok := prefixes[t]
		if !ok {
			prefix = fmt.Sprintf("xbt%d:", len(prefixes))
			prefixes[t], faults[t], quarantined[t] = prefix, &atomic.Bool{}, &atomic.Int64{}
		}
		return prefix, faults[t], quarantined[t]
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		prefix, fault, q := of(t)
		s, err := redis.Open(context.Background(), url, redis.Options{Prefix: prefix, RequireDurable: true,
			Replica: storetest.Replica,
			// The script fails after its checks, before its first write.
			Fault: func(string) error {
				if fault.Load() {
					return errors.New("audit append failed")
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
		RawContains: func(t *testing.T, needle []byte) bool {
			prefix, _, _ := of(t)
			return serverContains(t, url, prefix, needle)
		},
		Fault: func(t *testing.T, fail bool) { _, f, _ := of(t); f.Store(fail) },
		Corrupt: func(t *testing.T, recipient, id string) {
			prefix, _, _ := of(t)
			c := client(t, url)
			k := prefix + "d:" + recipient + "\x00" + id
			if n, err := c.Exists(context.Background(), k).Result(); err != nil || n != 1 {
				t.Fatalf("no delivery %q to corrupt: %v", k, err)
			}
			// A record of the wrong type: every command of a hash fails on it.
			if err := c.Set(context.Background(), k, "not a delivery record", 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
		Quarantined: func(t *testing.T) int { _, _, q := of(t); return int(q.Load()) },
		Footprint: func(t *testing.T) storetest.Footprint {
			prefix, _, _ := of(t)
			return footprint(t, url, prefix)
		},
	})
}

// footprint SCANs every key under prefix: message records (m:), the keys
// outside the audit chains and the members of their sets, and the memory
// of each (MEMORY USAGE, every element counted).
func footprint(t *testing.T, url, prefix string) storetest.Footprint {
	t.Helper()
	ctx := context.Background()
	c := client(t, url)
	var fp storetest.Footprint
	iter := c.Scan(ctx, 0, globEscape.Replace(prefix)+"*", 500).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		size, err := c.MemoryUsage(ctx, k, 0).Result()
		if errors.Is(err, goredis.Nil) {
			continue // deleted meanwhile
		}
		if err != nil {
			t.Fatalf("MEMORY USAGE %q: %v", k, err)
		}
		fp.Bytes += size
		if strings.HasPrefix(k, prefix+"audit:") {
			fp.AuditBytes += size
			continue
		}
		fp.Keys++
		if strings.HasPrefix(k, prefix+"m:") {
			fp.Records++
		}
		switch typ := c.Type(ctx, k).Val(); typ {
		case "zset":
			fp.Keys += int(c.ZCard(ctx, k).Val())
		case "set":
			fp.Keys += int(c.SCard(ctx, k).Val())
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return fp
}

func client(t *testing.T, url string) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// serverContains SCANs every key under prefix and reads every value of every
// type, and reports whether needle occurs in a key or a value.
func serverContains(t *testing.T, url, prefix string, needle []byte) bool {
	t.Helper()
	ctx := context.Background()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	defer c.Close()
	pattern := globEscape.Replace(prefix) + "*"
	found, keys := false, 0
	has := func(s string) bool { return strings.Contains(s, string(needle)) }
	iter := c.Scan(ctx, 0, pattern, 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		keys++
		var values []string
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE %q: %v", k, err)
		}
		switch typ {
		case "string":
			v, err := c.Get(ctx, k).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				t.Fatal(err)
			}
			values = []string{v}
		case "hash":
			m, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range m {
				values = append(values, f, v)
			}
		case "zset":
			zs, err := c.ZRangeWithScores(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				values = append(values, fmt.Sprint(z.Member))
			}
		case "set":
			if values, err = c.SMembers(ctx, k).Result(); err != nil {
				t.Fatal(err)
			}
		case "list":
			if values, err = c.LRange(ctx, k, 0, -1).Result(); err != nil {
				t.Fatal(err)
			}
		case "none": // expired or deleted meanwhile
		default:
			t.Fatalf("key %q of type %s: the raw scan cannot read it", k, typ)
		}
		if has(k) || slices.ContainsFunc(values, has) {
			found = true
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	if keys == 0 {
		t.Fatalf("raw scan saw no keys under %q", prefix)
	}
	return found
}

var globEscape = strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`)

func message(id string) *store.Message {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return &store.Message{From: "unhcr", ID: id, To: "ke-dra", Status: store.StatusAccepted,
		JWSSHA256: "jws", DecisionID: "decision", CreatedAt: now, UpdatedAt: now, Expires: now.Add(time.Hour)}
}

func deliveries(id string) []store.Delivery {
	return []store.Delivery{{ID: "d-" + id, Recipient: "ke-dra", Envelope: []byte("jwe")}}
}

// A stopped server makes every call fail with ErrUnavailable; once it is back
// on the same port and data, the same client works again and nothing is lost.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("stops redis-server and starts it again")
	}
	ctx := context.Background()
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	s, err := redis.Open(ctx, srv.URL()+"?max_retries=-1", redis.Options{Replica: "gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Accept(ctx, message("m1"), deliveries("m1")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Accept", func() error { _, err := s.Accept(ctx, message("m2"), deliveries("m2")); return err }},
		{"Message", func() error { _, err := s.Message(ctx, "unhcr", "m1"); return err }},
		{"Lease", func() error { _, err := s.Lease(ctx, "ke-dra", 1, time.Minute, time.Now()); return err }},
		{"Release", func() error { return s.Release(ctx, "ke-dra", "d-m1", time.Now()) }},
		{"DeadLetters", func() error { _, err := s.DeadLetters(ctx); return err }},
		{"Purge", func() error { _, err := s.Purge(ctx, time.Now()); return err }},
		{"Incr", func() error { _, err := s.Incr(ctx, "unhcr", time.Now(), time.Minute); return err }},
	}
	for _, c := range calls {
		err := c.fn()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while down: err = %v, want ErrUnavailable", c.name, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "redis: ") {
			t.Errorf("%s: error %q does not start with the package name", c.name, err)
		}
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if _, err := s.Message(ctx, "unhcr", "m1"); err != nil {
		t.Errorf("message accepted before the outage: %v", err)
	}
	if _, err := s.Message(ctx, "unhcr", "m2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("message refused during the outage: err = %v, want ErrNotFound", err)
	}
}

// What Accept returned survives a SIGKILL of the server (appendfsync always).
func TestServerCrash(t *testing.T) {
	ctx := context.Background()
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	s, err := redis.Open(ctx, srv.URL(), redis.Options{RequireDurable: true, Replica: "gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		id := fmt.Sprintf("m%d", i)
		if _, err := s.Accept(ctx, message(id), deliveries(id)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	s, err = redis.Open(ctx, srv.URL(), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d, err := s.Depth(ctx, "ke-dra"); err != nil || d != n {
		t.Errorf("Depth after crash = %d, %v; want %d", d, err, n)
	}
	for i := range n {
		if _, err := s.Message(ctx, "unhcr", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("m%d after crash: %v", i, err)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	c := goredis.NewClient(&goredis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer c.Close()

	t.Run("RequireDurable", func(t *testing.T) {
		if err := c.ConfigSet(ctx, "appendfsync", "everysec").Err(); err != nil {
			t.Fatal(err)
		}
		defer c.ConfigSet(ctx, "appendfsync", "always")
		if s, err := redis.Open(ctx, url, redis.Options{RequireDurable: true}); err == nil {
			s.Close()
			t.Fatal("Open accepted a server with appendfsync everysec")
		}
		s, err := redis.Open(ctx, url, redis.Options{})
		if err != nil {
			t.Fatalf("Open without RequireDurable: %v", err)
		}
		s.Close()
	})
	t.Run("BadURL", func(t *testing.T) {
		_, err := redis.Open(ctx, "redis://user:s3cret@127.0.0.1:1/x", redis.Options{})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("err = %v, want an error that does not repeat the password", err)
		}
	})
	t.Run("NoServer", func(t *testing.T) {
		_, err := redis.Open(ctx, "redis://127.0.0.1:1/0?max_retries=-1", redis.Options{})
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("Prefix", func(t *testing.T) {
		s, err := redis.Open(ctx, url, redis.Options{Prefix: "tenant-a:", Replica: "gw-test"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Accept(ctx, message("m1"), deliveries("m1")); err != nil {
			t.Fatal(err)
		}
		keys, err := c.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "tenant-a:") {
				t.Errorf("key %q outside the prefix", k)
			}
		}
		// Message, recipient index, queue, delivery, set of queues (the
		// message has neither consent nor retention), and the fence of the
		// replica's audit chain.
		if len(keys) != 6 {
			t.Errorf("%d keys for one message and one delivery, want 6: %q", len(keys), keys)
		}
		ttl, err := c.TTL(ctx, "tenant-a:m:unhcr\x00m1").Result()
		if err != nil || ttl != -1 {
			t.Errorf("message record TTL = %v, %v; want none (-1)", ttl, err)
		}
	})
}

// counter is gateway/ratelimit.Counter, restated so that this package's
// tests do not depend on the rate limiter's.
type counter interface {
	Incr(ctx context.Context, key string, windowStart time.Time, window time.Duration) (int64, error)
}

var _ counter = (*redis.Store)(nil)

func TestIncr(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	s, err := redis.Open(ctx, url, redis.Options{Prefix: "rl-test:"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := redis.Open(ctx, url, redis.Options{Prefix: "rl-test:"}) // a second gateway
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	o, _ := goredis.ParseURL(url)
	c := goredis.NewClient(o)
	defer c.Close()

	w0 := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	steps := []struct {
		name  string
		s     *redis.Store
		key   string
		start time.Time
		want  int64
	}{
		{"first", s, "unhcr", w0, 1},
		{"second", s, "unhcr", w0, 2},
		{"shared with another instance", other, "unhcr", w0, 3},
		{"another key", s, "iom", w0, 1},
		{"next window", s, "unhcr", w0.Add(time.Minute), 1},
		{"back in the first window", s, "unhcr", w0, 4},
	}
	for _, st := range steps {
		n, err := st.s.Incr(ctx, st.key, st.start, time.Minute)
		if err != nil || n != st.want {
			t.Errorf("%s: Incr = %d, %v; want %d", st.name, n, err, st.want)
		}
	}
	key := fmt.Sprintf("rl-test:rl:unhcr:%d", w0.UnixMilli())
	ttl, err := c.PTTL(ctx, key).Result()
	if err != nil || ttl <= time.Minute || ttl > time.Minute+time.Second {
		t.Errorf("PTTL %s = %v, %v; want in (1m, 1m1s]", key, ttl, err)
	}
	// A counter that lost its expiry gets one back on the next count.
	if err := c.Persist(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "unhcr", w0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.PTTL(ctx, key).Result(); err != nil || ttl <= 0 {
		t.Errorf("PTTL after a count on a persisted counter = %v, %v; want an expiry", ttl, err)
	}

	// Concurrent counts from both instances are all counted, once each.
	const n = 64
	got := make([]int64, n)
	var wg sync.WaitGroup
	w1 := w0.Add(time.Hour)
	for i := range n {
		wg.Go(func() {
			st := s
			if i%2 == 1 {
				st = other
			}
			v, err := st.Incr(ctx, "burst", w1, time.Second)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("concurrent counts %v, want 1..%d each once", got, n)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	url := redistest.Start(b)
	s, err := redis.Open(context.Background(), url, redis.Options{Replica: storetest.Replica, RequireDurable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Benchmark(b, s)
}

func TestCompactRewritesAOF(t *testing.T) {
	ctx := context.Background()
	s, err := redis.Open(ctx, redistest.Start(t), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// A second request while the first may still run is not an error.
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
}

// A forgotten message leaves no key that names it: its record (m:), its
// recipient index entry (t:) and its delivery records (d:) are deleted by
// the purge script, not left to expire; only the audit chain mentions it.
func TestForgottenKeysGone(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	s, err := redis.Open(ctx, url, redis.Options{Prefix: "f:", Replica: "gw-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := func() []string {
		t.Helper()
		var out []string
		iter := client(t, url).Scan(ctx, 0, "f:*", 100).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	before := keys()
	accepted, denied := message("m-accepted"), message("m-denied")
	accepted.RetentionDays = 1
	denied.Status = store.StatusDenied
	if _, err := s.Accept(ctx, accepted, append(deliveries("m-accepted"),
		store.Delivery{ID: "d-archive", Recipient: "ke-dra-archive", Envelope: []byte("jwe")})); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "ke-dra", "d-m-accepted", accepted.CreatedAt); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDenial(ctx, denied, audit.Entry{Kind: audit.KindDenied, MessageID: denied.ID}); err != nil {
		t.Fatal(err)
	}
	during := keys()
	ps, err := s.Purge(ctx, accepted.CreatedAt.Add(24*time.Hour))
	if err != nil || len(ps) != 2 {
		t.Fatalf("Purge: %+v, %v; want both forgotten", ps, err)
	}
	after := keys()
	for _, k := range after {
		if strings.Contains(k, "m-accepted") || strings.Contains(k, "m-denied") || strings.Contains(k, "d-archive") {
			t.Errorf("key %q left after the purge", k)
		}
	}
	// What stays is the audit chain's, the set of recipients that ever had
	// a queue, and nothing per message.
	var grown []string
	for _, k := range after {
		if !slices.Contains(before, k) && !strings.HasPrefix(k, "f:audit:") && k != "f:qs" {
			grown = append(grown, k)
		}
	}
	if len(grown) != 0 {
		t.Errorf("keys left by two forgotten messages: %q (while they were kept: %q)", grown, during)
	}
}
