package audit_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// TestBackends is the contract both backends pass.
func TestBackends(t *testing.T) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) {
			b := bk.open(t)
			key := signingKey(t)
			keys := audit.KeyFunc(key.Public())
			ctx := context.Background()
			t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

			t.Run("chain", func(t *testing.T) {
				l := newLog(t, b, "gw-a", key, newClock(t0).Now)
				record(t, l, 5, "ref-1")
				cp, err := l.Checkpoint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if cp.Count != 5 {
					t.Fatalf("checkpoint count %d, want 5", cp.Count)
				}
				record(t, l, 3, "ref-2")
				es, cps := all(t, b)
				if len(es) != 8 || len(cps) != 1 {
					t.Fatalf("%d entries %d checkpoints, want 8 and 1", len(es), len(cps))
				}
				for i, e := range es {
					if e.Seq != uint64(i+1) || e.Replica != "gw-a" {
						t.Fatalf("entry %d: seq %d replica %q", i, e.Seq, e.Replica)
					}
				}
				s, err := audit.Verify(es, cps, keys)
				if err != nil {
					t.Fatal(err)
				}
				count, head, err := b.Head(ctx, "gw-a")
				if err != nil || count != 8 || head != es[7].Hash || s.Replicas[0].Head != head {
					t.Fatalf("head %d %s %v, summary %+v", count, head, err, s)
				}
				if _, err := audit.VerifyLive(ctx, b, keys); err != nil {
					t.Fatal(err)
				}
				// Entries from the middle.
				var from []uint64
				b.Entries(ctx, "gw-a", 6, func(e audit.Entry) error { from = append(from, e.Seq); return nil })
				if len(from) != 3 || from[0] != 6 {
					t.Fatalf("entries from 6: %v", from)
				}
			})

			t.Run("concurrent appends keep one chain", func(t *testing.T) {
				l := newLog(t, b, "gw-busy", key, time.Now)
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for range 8 {
					wg.Go(func() {
						for range 70 { // 560 entries: more than one page of Entries
							if _, err := l.Record(ctx, sample(l, audit.KindDelivered, "ref-c", "p")); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
				if _, err := l.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
				s, err := audit.VerifyLive(ctx, b, keys)
				if err != nil {
					t.Fatal(err)
				}
				if r, _ := s.Replica("gw-busy"); r.Count != 560 {
					t.Fatalf("count %d, want 560", r.Count)
				}
			})

			t.Run("two replicas keep two chains", func(t *testing.T) {
				a := newLog(t, b, "gw-1", key, time.Now)
				c := newLog(t, b, "gw-2", key, time.Now)
				for range 3 {
					record(t, a, 1, "ref-x")
					record(t, c, 2, "ref-y")
				}
				s, err := audit.VerifyLive(ctx, b, keys)
				if err != nil {
					t.Fatal(err)
				}
				r1, _ := s.Replica("gw-1")
				r2, _ := s.Replica("gw-2")
				if r1.Count != 3 || r2.Count != 6 {
					t.Fatalf("gw-1 %d gw-2 %d, want 3 and 6", r1.Count, r2.Count)
				}
				ids, _ := b.Replicas(ctx)
				if len(ids) != 4 { // gw-a, gw-busy, gw-1, gw-2
					t.Fatalf("replicas %v", ids)
				}
			})

			t.Run("refused entries", func(t *testing.T) {
				l := newLog(t, b, "gw-a", key, time.Now)
				for name, e := range map[string]audit.Entry{
					"unknown kind":           {Kind: "viewed"},
					"subject ref in clear":   {Kind: audit.KindAccepted, SubjectHash: "ref-1"},
					"payload not a digest":   {Kind: audit.KindAccepted, PayloadSHA256: "Amina"},
					"upper-case hash digits": {Kind: audit.KindAccepted, SubjectHash: "AB" + digest("x")[2:]},
				} {
					if _, err := l.Record(ctx, e); err == nil {
						t.Errorf("%s: recorded", name)
					}
				}
				if n, _, _ := b.Head(ctx, "gw-a"); n != 8 {
					t.Fatalf("head moved to %d", n)
				}
			})

			t.Run("run checkpoints on a ticker and at the end", func(t *testing.T) {
				l := newLog(t, b, "gw-run", key, time.Now)
				record(t, l, 2, "ref-r")
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { l.Run(rctx, 20*time.Millisecond); close(done) }()
				deadline := time.Now().Add(5 * time.Second)
				for {
					cps, _ := b.Checkpoints(ctx, "gw-run")
					if len(cps) == 1 && cps[0].Count == 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no ticker checkpoint: %+v", cps)
					}
					time.Sleep(10 * time.Millisecond)
				}
				time.Sleep(60 * time.Millisecond) // idle ticks store nothing
				record(t, l, 1, "ref-r")
				cancel()
				<-done
				cps, _ := b.Checkpoints(ctx, "gw-run")
				last := cps[len(cps)-1]
				if last.Count != 3 {
					t.Fatalf("shutdown checkpoint count %d, want 3 (%d checkpoints)", last.Count, len(cps))
				}
				if len(cps) > 2 {
					t.Fatalf("%d checkpoints: idle ticks stored some", len(cps))
				}
			})
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	b := backends[0].open(t)
	key := signingKey(t)
	for _, tc := range []struct {
		name string
		o    audit.Options
	}{
		{"no replica", audit.Options{Signer: key, SubjectKey: subjectKey}},
		{"no signer", audit.Options{Replica: "gw", SubjectKey: subjectKey}},
		{"short subject key", audit.Options{Replica: "gw", Signer: key, SubjectKey: []byte("short")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := audit.New(b, tc.o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestBoltLockedByGateway(t *testing.T) {
	path := t.TempDir() + "/xborder.db"
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = bolt.Open(path, bolt.Options{ReadOnly: true, Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "a running gateway holds it") {
		t.Fatalf("opened a file another handle holds: %v", err)
	}
}
