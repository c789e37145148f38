package audit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// Two processes misconfigured with one replica id race for one chain: the
// append script refuses the loser, which links again; nothing is lost or
// forked.
func TestRedisSharedReplicaStaysOneChain(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	key := signingKey(t)
	var stored atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		b, err := redis.Open(ctx, url, redis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		l := newLog(t, b, "gw-same", key, time.Now)
		for range 3 {
			wg.Go(func() {
				for range 20 {
					_, err := l.Record(ctx, sample(l, audit.KindAccepted, "ref", "p"))
					switch {
					case err == nil:
						stored.Add(1)
					case !errors.Is(err, audit.ErrConflict):
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	b, err := redis.Open(ctx, url, redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := audit.VerifyLive(ctx, b, audit.KeyFunc(key.Public()))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Replica("gw-same"); r.Count != uint64(stored.Load()) || r.Count < 100 {
		t.Fatalf("chain has %d entries, %d appends succeeded", r.Count, stored.Load())
	}
}
