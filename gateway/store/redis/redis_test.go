package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
)

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
			if !strings.HasPrefix(k, "{tenant-a}:") {
				t.Errorf("key %q outside the namespace", k)
			}
		}
		ttl, err := c.TTL(ctx, "{tenant-a}:h:messages").Result()
		if err != nil || ttl != -1 {
			t.Errorf("message records TTL = %v, %v; want none (-1)", ttl, err)
		}
	})
	t.Run("EarlierLayout", func(t *testing.T) {
		if err := c.SAdd(ctx, "old:audit:replicas", "gw-1").Err(); err != nil {
			t.Fatal(err)
		}
		s, err := redis.Open(ctx, url, redis.Options{Prefix: "old:"})
		if err == nil || !strings.Contains(err.Error(), "earlier version") {
			if err == nil {
				s.Close()
			}
			t.Fatalf("Open over the earlier layout: %v", err)
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
