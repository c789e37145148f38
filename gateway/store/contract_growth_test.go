package store_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// Footprint is what the raw storage behind the stores of a test holds,
// measured with all of them closed.
type Footprint struct {
	// Records is the number of message records.
	Records int
	// Keys counts everything the store keeps outside the audit chains,
	// records included, each in the backend's own unit (bbolt: keys in
	// every bucket but the chains, at any depth; Redis: keys under the
	// prefix but the chains', and the members of its sets and sorted
	// sets).
	Keys int
	// Bytes is what the storage takes: bbolt, the file's size once
	// compacted; Redis, the memory of the keys under the prefix (MEMORY
	// USAGE).
	Bytes int64
	// AuditBytes is the part of Bytes that the audit chains take: they are
	// append-only and grow with every decision, by design.
	AuditBytes int64
}

// growthMessages is how many messages the growth case accepts: 2,000 by
// default, XBORDER_STORE_GROWTH for more (the figures in the README come
// from 20,000).
func growthMessages(t testing.TB) int {
	if v := os.Getenv("XBORDER_STORE_GROWTH"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("XBORDER_STORE_GROWTH=%q: want a number of messages, at least 100", v)
		}
		return n
	}
	return 2000
}

// testBoundedByWhatIsDue accepts and purges in a loop with an advancing
// fake clock, as a gateway does (a message every day/window of simulated
// time, a purge every round), and measures the storage at ten points: the
// message records are exactly the messages not yet due to be forgotten,
// and what the store keeps outside the audit chains stays flat once the
// first retention period has passed. Each message is retained one day
// and lives an hour; one in five is denied (forgotten at its exp); one in
// ten is a referral under one of five consents; every other accepted
// message's delivery is acknowledged at once, the others' payloads wait
// for the purge.
func testBoundedByWhatIsDue(t *testing.T, open opener, footprint func(*testing.T) Footprint) {
	n := growthMessages(t)
	g := &growthRun{ctx: context.Background(), open: open, footprint: footprint,
		env: typicalEnvelope(), forgetAt: make([]time.Time, n)}
	g.s = open(t)
	// g.s is reopened at every measurement: close the last one.
	defer func() { g.s.Close() }()

	points := max(1, n/growthRound/10)
	for r := 0; r*growthRound < n; r++ {
		lo, hi := r*growthRound, min(n, (r+1)*growthRound)
		g.decideConcurrently(t, lo, hi)
		g.purgeWhatIsDue(t, hi)
		if (r+1)%points != 0 && hi < n {
			continue
		}
		g.measure(t, hi)
	}
	if g.first == nil && n >= 4*growthWindow {
		t.Error("no measurement past the warm-up")
	}
}

const (
	growthWindow  = 250 // messages created within one retention period
	growthRound   = 50  // messages between two purges
	growthWorkers = 8   // callers at once: the stores' group commit
	// growthStep is the simulated time between two messages.
	growthStep = 24 * time.Hour / growthWindow
)

// growthRun is the state of testBoundedByWhatIsDue from one round to the
// next.
type growthRun struct {
	ctx       context.Context
	open      opener
	footprint func(*testing.T) Footprint
	s         store.Store
	env       []byte
	forgetAt  []time.Time // when message i is due to be forgotten
	forgotten int         // how many messages the purges forgot so far
	first     *Footprint  // at the first point past the warm-up
}

// decideConcurrently decides on messages lo to hi-1, by growthWorkers
// callers at once.
func (g *growthRun) decideConcurrently(t *testing.T, lo, hi int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, growthWorkers)
	for w := range growthWorkers {
		wg.Go(func() {
			for i := lo + w; i < hi; i += growthWorkers {
				if err := growthMessage(g.ctx, g.s, i, base.Add(time.Duration(i)*growthStep), g.env, &g.forgetAt[i]); err != nil {
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
}

// purgeWhatIsDue purges at the time of the last of the hi messages decided
// so far and checks that the purges forgot exactly the messages due by
// then.
func (g *growthRun) purgeWhatIsDue(t *testing.T, hi int) {
	t.Helper()
	now := base.Add(time.Duration(hi-1) * growthStep)
	ps, err := g.s.Purge(g.ctx, now)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	for _, p := range ps {
		if p.Forgotten {
			g.forgotten++
		}
	}
	due := 0
	for _, at := range g.forgetAt[:hi] {
		if !at.After(now) {
			due++
		}
	}
	if g.forgotten != due {
		t.Fatalf("after %d messages, at %v: %d forgotten, %d due", hi, now, g.forgotten, due)
	}
}

// measure measures the storage after hi messages, all of them decided:
// the message records are the messages not yet forgotten, at most a
// retention period's and a round; past the warm-up, the rest stays flat.
func (g *growthRun) measure(t *testing.T, hi int) {
	t.Helper()
	fp := g.reopenedFootprint(t)
	live := hi - g.forgotten
	t.Logf("%6d messages (%5.1f simulated days): %4d records (%d not yet due), %5d other keys, %7d bytes outside the audit chains (%4.0f per record), %8d audit bytes (%3.0f per message)",
		hi, float64(hi)/growthWindow, fp.Records, live, fp.Keys, fp.Bytes-fp.AuditBytes,
		float64(fp.Bytes-fp.AuditBytes)/float64(max(live, 1)), fp.AuditBytes, float64(fp.AuditBytes)/float64(hi))
	if fp.Records != live {
		t.Errorf("after %d messages: %d message records in the storage, %d not yet due", hi, fp.Records, live)
	}
	if live > growthWindow+growthRound {
		t.Errorf("after %d messages: %d not yet due, want at most a retention period's (%d) and a round", hi, live, growthWindow)
	}
	if hi < 2*growthWindow {
		return // warming up: the first messages are not due yet
	}
	if g.first == nil {
		g.first = &fp
		return
	}
	g.checkFlat(t, hi, fp)
}

// reopenedFootprint measures the storage with the store closed, as
// Footprint requires, and opens it again.
func (g *growthRun) reopenedFootprint(t *testing.T) Footprint {
	t.Helper()
	if err := g.s.Close(); err != nil {
		t.Fatal(err)
	}
	fp := g.footprint(t)
	g.s = g.open(t)
	return fp
}

// checkFlat checks fp, measured after hi messages, against the first
// point past the warm-up: page and hash-table granularity aside, no more.
func (g *growthRun) checkFlat(t *testing.T, hi int, fp Footprint) {
	t.Helper()
	if fp.Keys > g.first.Keys*5/4+10 {
		t.Errorf("after %d messages: %d keys outside the audit chains, %d at the first point: the store grows", hi, fp.Keys, g.first.Keys)
	}
	if other, was := fp.Bytes-fp.AuditBytes, g.first.Bytes-g.first.AuditBytes; other > was*3/2+64<<10 {
		t.Errorf("after %d messages: %d bytes outside the audit chains, %d at the first point: the store grows", hi, other, was)
	}
}

// growthMessage decides on message i of the growth case, created at `at`,
// and sets when it is due to be forgotten.
func growthMessage(ctx context.Context, s store.Store, i int, at time.Time, env []byte, forgetAt *time.Time) error {
	id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
	to := fmt.Sprintf("recipient-%d", i%7)
	m := message("unhcr", id, to, at)
	m.Expires, m.RetentionDays, m.ConsentID = at.Add(time.Hour), 1, ""
	if i%10 == 3 {
		m.ConsentID = fmt.Sprintf("consent-%d", i%5)
	}
	if i%5 == 0 {
		m.RetentionDays, m.ConsentID = 0, ""
		*forgetAt = m.Expires
		return s.RecordDenial(ctx, m, denialEntry(m))
	}
	*forgetAt, _ = m.PurgeAt()
	d := store.Delivery{ID: "d-" + id, Recipient: to, Envelope: env, CreatedAt: at, VisibleAt: at}
	if _, err := s.Accept(ctx, m, []store.Delivery{d}, acceptEntry(m)); err != nil {
		return fmt.Errorf("Accept %d: %w", i, err)
	}
	if i%2 == 0 {
		if err := s.Ack(ctx, to, d.ID, at); err != nil {
			return fmt.Errorf("Ack %d: %w", i, err)
		}
	}
	return nil
}
