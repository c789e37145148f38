package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv/boltkv"
	"github.com/xborder/xborder/gateway/store/kv/rediskv"
	"github.com/xborder/xborder/gateway/store/kvstore"
	"github.com/xborder/xborder/gateway/store/redistest"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func msg(id, to string) *store.Message {
	return &store.Message{From: "unhcr", ID: id, To: to, Type: "referral", Purpose: "family-tracing",
		JWSSHA256: "x", DecisionID: "d-" + id, CreatedAt: t0, Expires: t0.Add(time.Hour)}
}

func entry(id string) audit.Entry {
	return audit.Entry{Kind: audit.KindAccepted, MessageID: id, From: "unhcr", To: "ke-dra"}
}

// One change of many arriving together fails after it wrote (its audit
// append): it alone fails, with nothing of it written; the others commit,
// each with its entry, and the chain verifies.
func TestGroupCommitFailedChangeAlone(t *testing.T) {
	ctx := context.Background()
	db, err := boltkv.Open(filepath.Join(t.TempDir(), "x.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	s := kvstore.New(db, kvstore.Options{Replica: "gw-1", Fault: func(op string) error {
		if op == "accept" && calls.Add(1) == 3 {
			return errors.New("injected")
		}
		return nil
	}})
	defer s.Close()
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("m%02d", i)
			_, errs[i] = s.Accept(ctx, msg(id, "ke-dra"), []store.Delivery{{ID: "d-" + id, Envelope: []byte("jwe")}}, entry(id))
		})
	}
	wg.Wait()
	failed := -1
	for i, err := range errs {
		switch {
		case err == nil:
		case failed < 0 && errors.Is(err, store.ErrUnavailable) && !errors.Is(err, store.ErrOutcomeUnknown):
			failed = i
		default:
			t.Fatalf("Accept m%02d: %v", i, err)
		}
	}
	if failed < 0 {
		t.Fatal("no Accept failed")
	}
	entries := map[string]int{}
	err = s.Entries(ctx, "gw-1", 1, func(e audit.Entry) error { entries[e.MessageID]++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyLive(ctx, s, audit.KeyFunc()); err != nil {
		t.Fatalf("chain: %v", err)
	}
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		_, err := s.Message(ctx, "unhcr", id)
		switch {
		case i == failed && (!errors.Is(err, store.ErrNotFound) || entries[id] != 0):
			t.Errorf("%s failed: record %v, %d entries", id, err, entries[id])
		case i != failed && (err != nil || entries[id] != 1):
			t.Errorf("%s accepted: record %v, %d entries", id, err, entries[id])
		}
	}
	if d, err := s.Depth(ctx, "ke-dra"); err != nil || d != n-1 {
		t.Errorf("Depth = %d, %v; want %d", d, err, n-1)
	}
}

// Two stores on one Redis namespace (two replicas) lease one recipient's
// queue at once: a lease that read keys the other changed conflicts and
// runs again, so that no delivery is handed out twice within its
// visibility.
func TestTwoReplicasLease(t *testing.T) {
	ctx := context.Background()
	url := redistest.Start(t)
	var stores []*kvstore.Store
	for _, replica := range []string{"gw-1", "gw-2"} {
		db, err := rediskv.Open(ctx, url, "shared")
		if err != nil {
			t.Fatal(err)
		}
		s := kvstore.New(db, kvstore.Options{Replica: replica})
		defer s.Close()
		stores = append(stores, s)
	}
	const n = 60
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		if _, err := stores[i%2].Accept(ctx, msg(id, "ke-dra"), []store.Delivery{{ID: "d-" + id, Envelope: []byte("jwe")}}, entry(id)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for w := range 6 {
		wg.Go(func() {
			for {
				ds, err := stores[w%2].Lease(ctx, "ke-dra", 4, time.Hour, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("leased %d distinct deliveries, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s handed out %d times", id, c)
		}
	}
}
