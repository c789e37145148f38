package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// acceptances counts the acceptance entries of each message on replica's
// chain, and checks that the chain verifies.
func acceptances(t *testing.T, s *redis.Store, replica string) map[string]int {
	t.Helper()
	ctx := context.Background()
	if _, err := audit.VerifyLive(ctx, s, audit.KeyFunc()); err != nil {
		t.Fatalf("chain: %v", err)
	}
	n := map[string]int{}
	err := s.Entries(ctx, replica, 1, func(e audit.Entry) error {
		if e.Kind == audit.KindAccepted {
			n[e.MessageID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func acceptEntry(id string) audit.Entry {
	return audit.Entry{Kind: audit.KindAccepted, MessageID: id, From: "unhcr", To: "ke-dra"}
}

// Two stores misconfigured with one replica id write one chain: a batch
// that read a head another moved conflicts and runs again; every
// acceptance has its one entry, every refusal neither.
func TestHeadConflict(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	var stores []*redis.Store
	for range 2 {
		s, err := redis.Open(ctx, url, redis.Options{Replica: "gw-same"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		wg       sync.WaitGroup
	)
	for g := range 6 {
		s := stores[g%2]
		wg.Go(func() {
			for i := range 30 {
				id := fmt.Sprintf("g%d-m%d", g, i)
				_, err := s.Accept(ctx, message(id), deliveries(id), acceptEntry(id))
				switch {
				case err == nil:
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
				case !errors.Is(err, audit.ErrConflict):
					t.Errorf("Accept %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	got := acceptances(t, stores[0], "gw-same")
	for g := range 6 {
		for i := range 30 {
			id := fmt.Sprintf("g%d-m%d", g, i)
			_, err := stores[0].Message(ctx, "unhcr", id)
			switch {
			case accepted[id] && (err != nil || got[id] != 1):
				t.Errorf("%s accepted: record %v, %d entries", id, err, got[id])
			case !accepted[id] && (!errors.Is(err, store.ErrNotFound) || got[id] != 0):
				t.Errorf("%s refused: record %v, %d entries", id, err, got[id])
			}
		}
	}
	if len(accepted) < 150 {
		t.Errorf("only %d of 180 accepted", len(accepted))
	}
}

// An Accept whose commit was sent and whose answer was lost is
// ErrOutcomeUnknown, whether or not it applied; a read once the server
// answers tells the truth, and an acceptance that did not apply applies
// once when sent again. The markers are in the commit alone (the message
// record's JSON, a purge's entries), not in the reads before it.
func TestAnswerLost(t *testing.T) {
	ctx := context.Background()
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	proxy := redistest.NewProxy(t, srv.Addr())
	s, err := redis.Open(ctx, proxy.URL(), redis.Options{Replica: "gw-1", RequireDurable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accept := func(id string) error {
		_, err := s.Accept(ctx, message(id), deliveries(id), acceptEntry(id))
		return err
	}
	marker := func(id string) []byte { return []byte(`"id":"` + id + `"`) }
	unknown := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrOutcomeUnknown) || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrOutcomeUnknown and ErrUnavailable", err)
		}
	}
	if err := accept("warm-up"); err != nil {
		t.Fatal(err)
	}
	waitUp := func() {
		t.Helper()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("reply lost, server up", func(t *testing.T) {
		hit := proxy.CutReply(marker("lost-reply"), nil)
		unknown(t, accept("lost-reply"))
		<-hit
		if _, err := s.Message(ctx, "unhcr", "lost-reply"); err != nil {
			t.Fatalf("read back: %v, want the acceptance", err)
		}
	})
	t.Run("request lost, server up", func(t *testing.T) {
		hit := proxy.CutRequest(marker("lost-request"), nil)
		unknown(t, accept("lost-request"))
		<-hit
		if _, err := s.Message(ctx, "unhcr", "lost-request"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("read back: %v, want ErrNotFound", err)
		}
		if err := accept("lost-request"); err != nil {
			t.Fatalf("Accept again: %v", err)
		}
	})
	t.Run("purge reply lost, server up", func(t *testing.T) {
		m := message("purge-lost")
		m.RetentionDays = 1
		if _, err := s.Accept(ctx, m, deliveries("purge-lost"), acceptEntry("purge-lost")); err != nil {
			t.Fatal(err)
		}
		hit := proxy.CutReply([]byte(`"kind":"forgotten"`), nil)
		_, err := s.Purge(ctx, m.CreatedAt.Add(24*time.Hour))
		<-hit
		unknown(t, err)
		if _, err := s.Message(ctx, "unhcr", "purge-lost"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("read back: %v, want ErrNotFound (forgotten)", err)
		}
	})
	t.Run("server killed after running it", func(t *testing.T) {
		proxy.CutReply(marker("killed-after"), func() { srv.Kill() })
		err := accept("killed-after")
		if !errors.Is(err, store.ErrOutcomeUnknown) || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Accept: %v, want ErrOutcomeUnknown", err)
		}
		if _, err := s.Message(ctx, "unhcr", "killed-after"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Message while down: %v, want ErrUnavailable (it cannot tell)", err)
		}
		waitUp()
		// The server answered only once the commit was fsynced: it is there.
		if _, err := s.Message(ctx, "unhcr", "killed-after"); err != nil {
			t.Fatalf("read back: %v, want the acceptance", err)
		}
	})
	t.Run("server killed before running it", func(t *testing.T) {
		proxy.CutRequest(marker("killed-before"), func() { srv.Kill() })
		if err := accept("killed-before"); !errors.Is(err, store.ErrOutcomeUnknown) {
			t.Fatalf("Accept: %v, want ErrOutcomeUnknown", err)
		}
		waitUp()
		if _, err := s.Message(ctx, "unhcr", "killed-before"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("read back: %v, want ErrNotFound", err)
		}
		// The same acceptance again: it applies once.
		if err := accept("killed-before"); err != nil {
			t.Fatalf("Accept again: %v", err)
		}
	})
	// Let the store's clients see the server again before the last check.
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := acceptances(t, s, "gw-1")
	for _, id := range []string{"warm-up", "lost-reply", "lost-request", "killed-after", "killed-before"} {
		if got[id] != 1 {
			t.Errorf("%s: %d acceptance entries, want 1", id, got[id])
		}
	}
}
