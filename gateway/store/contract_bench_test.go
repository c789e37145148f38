package store_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// envelopeSize is the envelope the benchmarks queue: a typical sealed
// identity verification request.
const envelopeSize = 4 << 10

// benchmarkStore measures the store operations on the hot path: Accept (one
// message, one delivery, its acceptance entry) by one caller and by eight
// at once, Lease+Ack of one delivery (its "delivered" entry), and Message;
// then the retry and retention operations: Release, DeadLetter+Requeue,
// Purge. s must be empty, opened with replica, and is not closed.
func benchmarkStore(b *testing.B, s store.Store) {
	bs := &benchStore{ctx: context.Background(), s: s, env: typicalEnvelope(), retention: 30}
	b.Run("Accept", bs.benchAccept)
	b.Run("AcceptParallel", bs.benchAcceptParallel)
	b.Run("LeaseAck", bs.benchLeaseAck)
	b.Run("Release", bs.benchRelease)
	b.Run("DeadLetterRequeue", bs.benchDeadLetterRequeue)
	// Everything accepted so far is due 30 days after base: thousands of
	// messages in the retention index, none due in the two cases below.
	b.Run("PurgeNothingDue", bs.benchPurgeNothingDue)
	b.Run("Purge100", bs.benchPurge100)
	b.Run("Message", bs.benchMessage)
}

// benchStore is what the benchmarks of one benchmarkStore call share: they run
// one after the other on the same store, each on what the ones before it
// left, so the ids they give go on from one to the next.
type benchStore struct {
	ctx context.Context
	s   store.Store
	env []byte
	// seq is the last id acceptOne gave.
	seq int
	// parallel is the last id of AcceptParallel, across the runs of b.N.
	parallel atomic.Int64
	// retention is the retention period of the messages accepted, in days.
	retention int
}

// typicalEnvelope is an envelope of envelopeSize bytes, for the benchmarks
// and the growth case.
func typicalEnvelope() []byte {
	env := make([]byte, envelopeSize)
	for i := range env {
		env[i] = 'A' + byte(i%26)
	}
	return env
}

// acceptOne accepts a new message to recipient, with one delivery of the
// envelope. It does not call b.Helper(): it runs inside timed loops, and
// b.Helper() (a stack walk under a lock) would add to what they measure.
func (bs *benchStore) acceptOne(b *testing.B, recipient string) {
	bs.seq++
	id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", bs.seq)
	m := message("unhcr", id, recipient, base)
	m.RetentionDays = bs.retention
	d := store.Delivery{ID: "d-" + id, Recipient: recipient, Envelope: bs.env, CreatedAt: base, VisibleAt: base}
	if _, err := bs.s.Accept(bs.ctx, m, []store.Delivery{d}, acceptEntry(m)); err != nil {
		b.Fatalf("Accept: %v", err)
	}
}

func (bs *benchStore) benchAccept(b *testing.B) {
	for b.Loop() {
		bs.acceptOne(b, "bench-accept")
	}
}

func (bs *benchStore) benchAcceptParallel(b *testing.B) {
	// Flat out: 8 callers at once on 2 cores (GOMAXPROCS × 4), as the
	// gateway's requests in flight; reported as accepts a second.
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Not acceptOne: its seq is not safe for concurrent use.
			id := fmt.Sprintf("p%07d-0000-4000-8000-000000000000", bs.parallel.Add(1))
			m := message("unhcr", id, "bench-parallel", base)
			m.RetentionDays = bs.retention
			d := store.Delivery{ID: "d-" + id, Recipient: "bench-parallel", Envelope: bs.env, CreatedAt: base, VisibleAt: base}
			if _, err := bs.s.Accept(bs.ctx, m, []store.Delivery{d}, acceptEntry(m)); err != nil {
				b.Errorf("Accept: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepts/s")
}

func (bs *benchStore) benchLeaseAck(b *testing.B) {
	// A queue a few thousand deep, as under a recipient's outage.
	b.StopTimer()
	for range 2000 {
		bs.acceptOne(b, "bench-lease")
	}
	b.StartTimer()
	now := base
	for b.Loop() {
		b.StopTimer()
		bs.acceptOne(b, "bench-lease")
		b.StartTimer()
		now = now.Add(time.Millisecond)
		ds, err := bs.s.Lease(bs.ctx, "bench-lease", 1, time.Hour, now)
		if err != nil || len(ds) != 1 {
			b.Fatalf("Lease: %d deliveries, %v", len(ds), err)
		}
		if err := bs.s.Ack(bs.ctx, "bench-lease", ds[0].ID, now); err != nil {
			b.Fatalf("Ack: %v", err)
		}
	}
}

func (bs *benchStore) benchRelease(b *testing.B) {
	// A failed attempt on a queue a few thousand deep.
	const n = 2000
	first := bs.seq + 1
	for range n {
		bs.acceptOne(b, "bench-release")
	}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("d-%08d-0000-4000-8000-000000000000", first+i%n)
		if err := bs.s.Release(bs.ctx, "bench-release", id, base.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatalf("Release: %v", err)
		}
		i++
	}
}

func (bs *benchStore) benchDeadLetterRequeue(b *testing.B) {
	bs.acceptOne(b, "bench-dead")
	id := fmt.Sprintf("d-%08d-0000-4000-8000-000000000000", bs.seq)
	for b.Loop() {
		if err := bs.s.DeadLetter(bs.ctx, "bench-dead", id, base); err != nil {
			b.Fatalf("DeadLetter: %v", err)
		}
		if err := bs.s.Requeue(bs.ctx, "bench-dead", id, base); err != nil {
			b.Fatalf("Requeue: %v", err)
		}
	}
}

func (bs *benchStore) benchPurgeNothingDue(b *testing.B) {
	for b.Loop() {
		if ps, err := bs.s.Purge(bs.ctx, base.Add(24*time.Hour)); err != nil || len(ps) != 0 {
			b.Fatalf("Purge: %d, %v", len(ps), err)
		}
	}
}

func (bs *benchStore) benchPurge100(b *testing.B) {
	// 100 messages due, each with one queued 4 KiB envelope: purged
	// and forgotten (their exp passed long before), two entries each.
	const batch = 100
	bs.retention = 1
	defer func() { bs.retention = 30 }()
	for b.Loop() {
		b.StopTimer()
		for range batch {
			bs.acceptOne(b, "bench-purge")
		}
		b.StartTimer()
		ps, err := bs.s.Purge(bs.ctx, base.Add(24*time.Hour))
		if err != nil || len(ps) != batch {
			b.Fatalf("Purge: %d purged, %v", len(ps), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
}

func (bs *benchStore) benchMessage(b *testing.B) {
	bs.acceptOne(b, "bench-message")
	id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", bs.seq)
	for b.Loop() {
		if _, err := bs.s.Message(bs.ctx, "unhcr", id); err != nil {
			b.Fatalf("Message: %v", err)
		}
	}
}
