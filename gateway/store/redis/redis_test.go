package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
	"github.com/xborder/xborder/gateway/store/storetest"
)

func TestContract(t *testing.T) {
	url := redistest.Start(t)
	var (
		mu       sync.Mutex
		prefixes = map[*testing.T]string{}
	)
	storetest.Run(t, func(t *testing.T) store.Store {
		mu.Lock()
		prefix, ok := prefixes[t]
		if !ok {
			prefix = fmt.Sprintf("xbt%d:", len(prefixes))
			prefixes[t] = prefix
		}
		mu.Unlock()
		s, err := redis.Open(context.Background(), url, redis.Options{Prefix: prefix, RequireDurable: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

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
	ctx := context.Background()
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	s, err := redis.Open(ctx, srv.URL()+"?max_retries=-1", redis.Options{})
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
	s, err := redis.Open(ctx, srv.URL(), redis.Options{RequireDurable: true})
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
		s, err := redis.Open(ctx, url, redis.Options{Prefix: "tenant-a:"})
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
		if len(keys) != 4 {
			t.Errorf("%d keys for one message and one delivery, want 4: %q", len(keys), keys)
		}
		ttl, err := c.TTL(ctx, "tenant-a:m:unhcr\x00m1").Result()
		if err != nil || ttl != -1 {
			t.Errorf("message record TTL = %v, %v; want none (-1)", ttl, err)
		}
	})
}

func BenchmarkStore(b *testing.B) {
	url := redistest.Start(b)
	s, err := redis.Open(context.Background(), url, redis.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Benchmark(b, s)
}
