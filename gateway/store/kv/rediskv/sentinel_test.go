package rediskv_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store/kv"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/sentineltest"
)

func TestParseSentinelURL(t *testing.T) {
	o, err := rediskv.ParseSentinelURL("redis-sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26379,[::1]:26380/mymaster/3")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.SentinelAddrs, " ") != "10.0.0.1:26379 10.0.0.2:26379 [::1]:26380" || o.MasterName != "mymaster" || o.DB != 3 || o.Password != "s@cret" {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range []string{
		"redis://127.0.0.1:6379/0",
		"redis-sentinel://127.0.0.1:26379/mymaster",
		"redis-sentinel://127.0.0.1:26379//0",
		"redis-sentinel://127.0.0.1/mymaster/0",
		"redis-sentinel://127.0.0.1:26379,/mymaster/0",
		"redis-sentinel://127.0.0.1:99999/mymaster/0",
		"redis-sentinel://127.0.0.1:26379/mymaster/x",
		"redis-sentinel://127.0.0.1:26379/mymaster/0/extra",
	} {
		if _, err := rediskv.ParseSentinelURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func openSentinel(t testing.TB, g *sentineltest.Group, name string, ack int) *rediskv.DB {
	t.Helper()
	db, err := rediskv.OpenURL(ctx, g.URL(), rediskv.Options{Name: name, AckReplicas: ack})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func putKey(db kv.DB, key string) error {
	return db.Update(ctx, func(tx kv.Tx) error { return tx.Put("load", []byte(key), []byte(key)) })
}

// Both replicas frozen: a commit is applied on the primary but answers
// kv.ErrNotReplicated after the ack timeout, never success. WAIT sent on
// another connection than the commit's would answer 2 at once (that
// connection has written nothing): this test fails then.
func TestSentinelReplicasFrozen(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group of six redis-server processes")
	}
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "frozen", -1)
	if err := putKey(db, "before"); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Data[1:] {
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		key := fmt.Sprint("frozen-", i)
		start := time.Now()
		err := putKey(db, key)
		took := time.Since(start)
		if !errors.Is(err, kv.ErrNotReplicated) || !errors.Is(err, kv.ErrUnknown) {
			t.Fatalf("commit %d with both replicas frozen: %v, want kv.ErrNotReplicated", i, err)
		}
		t.Logf("not replicated after %v: %v", took.Round(time.Millisecond), err)
		// Applied on the primary all the same: outcome unknown, not refused.
		var ok bool
		if err := db.View(ctx, func(r kv.Reader) (err error) { _, ok, err = r.Get("load", []byte(key)); return err }); err != nil || !ok {
			t.Errorf("the not-replicated commit %d is not on the primary (%v, %v)", i, ok, err)
		}
	}
	if got := db.Stats().NotReplicated; got != 3 {
		t.Errorf("NotReplicated counter %d, want 3", got)
	}
	for _, n := range g.Data[1:] {
		n.Thaw()
	}
	// Once the replicas answer again, commits succeed again.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		err := putKey(db, fmt.Sprint("after-", i))
		if err == nil {
			break
		}
		if !errors.Is(err, kv.ErrNotReplicated) || wctx.Err() != nil {
			t.Fatalf("after thawing: %v", err)
		}
	}
}

// Under a steady load of commits, kill -9 of the primary: every commit
// acknowledged is on the new primary, the function library is there, every
// failure during the switch says unavailable or unknown (never a silent
// success, never another error); then the old primary, restarted, rejoins
// as a replica with the library and every acknowledged commit.
func TestSentinelKillPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group and waits for a failover")
	}
	failoverUnderLoad(t, "kill -9", (*sentineltest.Node).Kill, nil, (*sentineltest.Node).Restart)
}

// The primary frozen (SIGSTOP) past its failover, thawed once the new
// primary is named: commits that sat in its sockets run when it wakes, and
// one its still-attached replica acknowledges must not be erased when
// Sentinel moves both to the new primary.
func TestSentinelFreezePrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group and waits for a failover")
	}
	failoverUnderLoad(t, "SIGSTOP", (*sentineltest.Node).Freeze, (*sentineltest.Node).Thaw, nil)
}

// failoverUnderLoad runs four writers, does fault to the primary, waits for
// +switch-master, does onSwitch to the old primary, goes on until commits
// succeed through the new one, checks that every acknowledged commit is
// there, then does afterLoad to the old primary and waits for it to rejoin
// as a replica holding them all and the library.
func failoverUnderLoad(t *testing.T, what string, fault, onSwitch, afterLoad func(*sentineltest.Node) error) {
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "kill", -1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	switches, err := g.Switches(sctx)
	if err != nil {
		t.Fatal(err)
	}
	const workers, before, after = 4, 300, 300
	var (
		mu                                sync.Mutex
		acked                             []string
		unavailable, notReplicated, unkn  int
		longest                           time.Duration
		switched                          atomic.Bool
		okBefore, okAfter, firstAfter     atomic.Int64
		reachedBefore, reachedAfter, stop = make(chan struct{}), make(chan struct{}), make(chan struct{})
		onceBefore, onceAfter             sync.Once
		wg                                sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var failingSince time.Time
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%07d", w, i)
				start := time.Now()
				err := putKey(db, key)
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, key)
					if !failingSince.IsZero() {
						longest = max(longest, time.Since(failingSince))
						failingSince = time.Time{}
					}
				case errors.Is(err, kv.ErrUnavailable):
					unavailable++
				case errors.Is(err, kv.ErrNotReplicated):
					notReplicated++
				case errors.Is(err, kv.ErrUnknown):
					unkn++
				default:
					t.Errorf("commit %s: %v (neither unavailable nor unknown)", key, err)
				}
				mu.Unlock()
				if err != nil {
					if failingSince.IsZero() {
						failingSince = start
					}
					time.Sleep(10 * time.Millisecond) // a client backing off
					continue
				}
				if switched.Load() {
					if okAfter.Add(1) == 1 {
						firstAfter.Store(time.Now().UnixNano())
					}
					if okAfter.Load() >= after {
						onceAfter.Do(func() { close(reachedAfter) })
					}
				} else if okBefore.Add(1) == before {
					onceBefore.Do(func() { close(reachedBefore) })
				}
			}
		}()
	}
	wait := func(ch <-chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			close(stop)
			wg.Wait()
			t.Fatalf("no %s within 60 s", what)
		}
	}
	wait(reachedBefore, "commits before the kill")
	old := g.Data[0]
	killed := time.Now()
	if err := fault(old); err != nil {
		t.Fatal(err)
	}
	var primary *sentineltest.Node
	select {
	case primary = <-switches:
	case <-time.After(60 * time.Second):
		close(stop)
		wg.Wait()
		t.Fatalf("no +switch-master within 60 s of the %s", what)
	}
	switchedAt := time.Now()
	switchedAfter := switchedAt.Sub(killed)
	switched.Store(true)
	if onSwitch != nil {
		if err := onSwitch(old); err != nil {
			t.Fatal(err)
		}
	}
	wait(reachedAfter, "commits after the switch")
	close(stop)
	wg.Wait()
	t.Logf("%s of %s: +switch-master to %s after %v; %d commits acknowledged; failures: %d unavailable, %d not replicated, %d unknown; longest run of failures of one writer %v; first commit acknowledged %v after the switch was announced",
		what, old.Name, primary.Name, switchedAfter.Round(time.Millisecond), len(acked), unavailable, notReplicated, unkn, longest.Round(time.Millisecond),
		time.Unix(0, firstAfter.Load()).Sub(switchedAt).Round(time.Millisecond))

	c := primary.Client()
	defer c.Close()
	if missing := missingKeys(t, c, "{kill}:h:load", acked); len(missing) > 0 {
		t.Errorf("%d acknowledged commits are not on the new primary, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	hasLibrary(t, c, primary.Name)

	if afterLoad != nil {
		if err := afterLoad(old); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	if err := g.WaitReplicaOf(rctx, old, primary); err != nil {
		t.Fatal(err)
	}
	oc := old.Client()
	defer oc.Close()
	hasLibrary(t, oc, old.Name+" (restarted)")
	if missing := missingKeys(t, oc, "{kill}:h:load", acked); len(missing) > 0 {
		t.Errorf("%d acknowledged commits are not on the restarted old primary, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	if err := putKey(db, "after-rejoin"); err != nil {
		t.Errorf("a commit after the old primary rejoined: %v", err)
	}
}

func missingKeys(t *testing.T, c *redis.Client, hash string, keys []string) []string {
	t.Helper()
	var missing []string
	for len(keys) > 0 {
		n := min(len(keys), 500)
		vals, err := c.HMGet(ctx, hash, keys[:n]...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if v == nil {
				missing = append(missing, keys[i])
			}
		}
		keys = keys[n:]
	}
	return missing
}

func hasLibrary(t *testing.T, c *redis.Client, who string) {
	t.Helper()
	libs, err := c.FunctionList(ctx, redis.FunctionListQuery{}).Result()
	if err != nil || len(libs) != 1 || libs[0].Name != "xkv1" {
		t.Errorf("%s: function libraries %+v (%v), want xkv1", who, libs, err)
	}
}

// Check finds the group durable while one acknowledging replica is, and
// names what is not.
func TestSentinelCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group of six redis-server processes")
	}
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "check", -1)
	warn, err := db.Check(ctx)
	if err != nil {
		t.Fatalf("a durable group: %v", err)
	}
	if len(warn) != 1 || !strings.Contains(warn[0], "min-replicas-to-write is 0") {
		t.Errorf("warnings %q, want one on min-replicas-to-write", warn)
	}
	set := func(n *sentineltest.Node, k, v string) {
		c := n.Client()
		defer c.Close()
		if err := c.ConfigSet(ctx, k, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	set(g.Data[1], "appendfsync", "everysec")
	if warn, err = db.Check(ctx); err != nil || !strings.Contains(strings.Join(warn, "\n"), "appendfsync everysec") {
		t.Errorf("one replica not durable, the other is: %v, warnings %q", err, warn)
	}
	set(g.Data[2], "appendonly", "no")
	if _, err = db.Check(ctx); err == nil || !strings.Contains(err.Error(), "0 durable online replicas") {
		t.Errorf("no durable replica: %v", err)
	}
	set(g.Data[0], "min-replicas-to-write", "1")
	set(g.Data[0], "appendfsync", "everysec")
	if warn, err = db.Check(ctx); err == nil || !strings.Contains(err.Error(), "primary: appendonly yes, appendfsync everysec") {
		t.Errorf("primary not durable: %v", err)
	}
	for _, w := range warn {
		if strings.Contains(w, "min-replicas-to-write") {
			t.Errorf("min-replicas-to-write 1 still warned: %q", w)
		}
	}
}

// go-redis logs every failed dial; a failover test makes thousands.
type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietLog{}) }

// The same with 16 writers at once (each commit a 2 KiB record and a queue
// entry, no key shared): what the wait costs in throughput when commits
// overlap.
func BenchmarkSentinelUpdateParallel(b *testing.B) {
	g := sentineltest.Start(b)
	record := make([]byte, 2048)
	for _, ack := range []int{0, 1} {
		b.Run(fmt.Sprint("ack", ack), func(b *testing.B) {
			db := openSentinel(b, g, fmt.Sprint("pbench", ack), ack)
			var n atomic.Int64
			b.SetParallelism(8) // 8 × GOMAXPROCS writers
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := []byte(fmt.Sprint(n.Add(1)))
					if err := db.Update(ctx, func(tx kv.Tx) error {
						if err := tx.Put("records", id, record); err != nil {
							return err
						}
						return tx.Put("queue", id, id)
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// A transaction that read a key before a failover erased the write it saw
// must not commit after it: the new primary counts revisions again from
// where it was, and a write there takes the erased write's number. The
// primary and the replica holding the write are killed; the other replica,
// detached before the write, is promoted.
func TestSentinelErasedVersionNotReused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group and waits for a failover")
	}
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "aba", 0)
	other := openSentinel(t, g, "aba", 0)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	switches, err := g.Switches(sctx)
	if err != nil {
		t.Fatal(err)
	}
	p, r1, r2 := g.Data[0], g.Data[1], g.Data[2]
	// Both replicas hold the function library (one write and WAIT on the
	// same connection), then r2 is detached.
	pc := p.Client()
	if err := pc.Set(ctx, "sync", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := pc.Wait(ctx, 2, 10*time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2: %d %v", n, err)
	}
	pc.Close()
	rc := r2.Client()
	if err := rc.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put("b", []byte("k"), []byte("erased")) }); err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx kv.Tx) error {
		v, _, err := tx.Get("b", []byte("k"))
		if err != nil || string(v) != "erased" {
			return fmt.Errorf("read %q, %v", v, err)
		}
		p.Kill()
		r1.Kill()
		select {
		case n := <-switches:
			if n != r2 {
				return fmt.Errorf("promoted %s", n.Name)
			}
		case <-time.After(60 * time.Second):
			return errors.New("no +switch-master")
		}
		// Another writer on the new primary, once its client finds it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := other.Update(ctx, func(tx kv.Tx) error { return tx.Put("b", []byte("k"), []byte("after")) })
			if err == nil {
				break
			}
			if !errors.Is(err, kv.ErrUnavailable) || time.Now().After(deadline) {
				return fmt.Errorf("the other writer: %w", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return tx.Put("b", []byte("derived"), []byte("from a value a failover erased"))
	})
	if !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("a transaction that read an erased write committed after the failover: %v, want kv.ErrConflict", err)
	}
}

// Both replicas frozen: they stay "online" on the primary until its
// repl-timeout, accept connections and answer nothing. Check must say
// that no durable replica answers within about the ack timeout, not after
// a client's read timeouts per replica and command (every write waits
// for it).
func TestSentinelCheckFrozenReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group of six redis-server processes")
	}
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "checkfrozen", -1)
	for _, n := range g.Data[1:] {
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range g.Data[1:] {
			n.Thaw()
		}
	}()
	start := time.Now()
	_, err := db.Check(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "0 durable online replicas") {
		t.Errorf("both replicas frozen: %v", err)
	}
	t.Logf("Check with both replicas frozen answered after %v", took.Round(time.Millisecond))
	if limit := 2*rediskv.DefaultAckTimeout + time.Second; took > limit {
		t.Errorf("Check took %v with both replicas frozen, want under %v", took.Round(time.Millisecond), limit)
	}
}

// Settle answers nil while a replica holds what the primary holds, and
// kv.ErrNotReplicated with both replicas frozen — although this
// connection wrote nothing of the store's, its own write before the WAIT
// makes the WAIT count for everything before it.
func TestSentinelSettle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Sentinel group of six redis-server processes")
	}
	g := sentineltest.Start(t)
	db := openSentinel(t, g, "settle", -1)
	if err := putKey(db, "k"); err != nil {
		t.Fatal(err)
	}
	if err := db.Settle(ctx); err != nil {
		t.Fatalf("settle with both replicas attached: %v", err)
	}
	for _, n := range g.Data[1:] {
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range g.Data[1:] {
			n.Thaw()
		}
	}()
	if err := db.Settle(ctx); !errors.Is(err, kv.ErrNotReplicated) {
		t.Fatalf("settle with both replicas frozen: %v, want kv.ErrNotReplicated", err)
	}
}
