package rediskv_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store/kv"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/redistest"
)

var ctx = context.Background()

func open(t testing.TB, url, name string) *rediskv.DB {
	t.Helper()
	db, err := rediskv.Open(ctx, url, name)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// A write the apply function cannot make (a bucket's key holds another
// type) is refused before its first write: nothing of the update lands.
func TestNoPartialCommit(t *testing.T) {
	url := redistest.Start(t)
	db := open(t, url, "p")
	defer db.Close()
	c := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer c.Close()
	if err := c.Set(ctx, "{p}:z:second", "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := db.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Put("first", []byte("k"), []byte("v")); err != nil {
			return err
		}
		return tx.Put("second", []byte("k"), []byte("v"))
	})
	if n, err := c.Exists(ctx, "{p}:h:first", "{p}:z:first", "{p}:h:second", "{p}:rev").Result(); err != nil || n != 0 {
		t.Errorf("a refused update wrote %d keys (%v)", n, err)
	}
	if err == nil || !strings.Contains(err.Error(), "not a zset") {
		t.Errorf("Update returned %v", err)
	}
}

// The library is a function (replicated, persisted), loaded again by
// every Open; a server that lost it gets it back.
func TestFunctionLoaded(t *testing.T) {
	url := redistest.Start(t)
	db := open(t, url, "f")
	c := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer c.Close()
	if err := c.FunctionFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put("a", []byte("k"), nil) }); err == nil {
		t.Fatal("a commit without the function succeeded")
	}
	db.Close()
	db = open(t, url, "f")
	defer db.Close()
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put("a", []byte("k"), nil) }); err != nil {
		t.Fatal(err)
	}
	libs, err := c.FunctionList(ctx, redis.FunctionListQuery{}).Result()
	if err != nil || len(libs) != 1 || libs[0].Name != "xkv1" {
		t.Errorf("function libraries: %+v %v", libs, err)
	}
}

// A commit whose answer is lost is ErrUnknown, never ErrConflict (a
// retried commit would find its own writes), and reading back tells.
func TestLostAnswer(t *testing.T) {
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	proxy := redistest.NewProxy(t, srv.Addr())
	db := open(t, proxy.URL(), "lost")
	defer db.Close()
	for _, c := range []struct {
		key     string
		cut     func(marker []byte, then func()) <-chan struct{}
		applied bool
	}{
		{"reply-lost", proxy.CutReply, true},
		{"request-lost", proxy.CutRequest, false},
	} {
		done := c.cut([]byte("xkv1_apply"), nil)
		err := db.Update(ctx, func(tx kv.Tx) error {
			if _, _, err := tx.Get("a", []byte(c.key)); err != nil {
				return err
			}
			return tx.Put("a", []byte(c.key), []byte("v"))
		})
		<-done
		if !errors.Is(err, kv.ErrUnknown) {
			t.Errorf("%s: Update returned %v, want kv.ErrUnknown", c.key, err)
		}
		var ok bool
		if err := db.View(ctx, func(r kv.Reader) (err error) {
			_, ok, err = r.Get("a", []byte(c.key))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if ok != c.applied {
			t.Errorf("%s: read back %v, want %v", c.key, ok, c.applied)
		}
	}
}

// A client that retries commands is refused.
func TestRetryingClientRefused(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(redistest.Start(t), "redis://"), "/0")})
	defer c.Close()
	if _, err := rediskv.New(ctx, c, "r"); err == nil {
		t.Error("a client with go-redis's default retries was accepted")
	}
}

// A server that refuses writes (too few replicas, a replica) answers
// kv.ErrUnavailable at once, nothing applied; a server that does not
// listen too.
func TestRefusalsAreUnavailable(t *testing.T) {
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	db := open(t, srv.URL(), "refused")
	defer db.Close()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	for _, cfg := range [][]string{
		{"CONFIG", "SET", "min-replicas-to-write", "1"}, // NOREPLICAS
		{"CONFIG", "SET", "min-replicas-to-write", "0"},
		{"REPLICAOF", "127.0.0.1", "1"}, // READONLY: a replica of nothing
	} {
		args := make([]any, len(cfg))
		for i, a := range cfg {
			args[i] = a
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
		if cfg[len(cfg)-1] == "0" {
			continue
		}
		err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put("a", []byte(cfg[0]), []byte("v")) })
		if !errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrUnknown) {
			t.Errorf("after %v: %v, want kv.ErrUnavailable", cfg, err)
		}
		if n, err := c.Exists(ctx, "{refused}:h:a").Result(); err != nil || n != 0 {
			t.Errorf("after %v: a refused commit wrote (%d, %v)", cfg, n, err)
		}
	}
	srv.Kill()
	start := time.Now()
	err = db.Update(ctx, func(tx kv.Tx) error { return tx.Put("a", []byte("k"), []byte("v")) })
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Errorf("server gone: %v, want kv.ErrUnavailable", err)
	}
	t.Logf("server gone: %v after %v", err, time.Since(start).Round(time.Millisecond))
	if s := db.Stats(); s.Unavailable != 3 || s.Unknown != 0 {
		t.Errorf("counters %+v, want 3 unavailable", s)
	}
}
