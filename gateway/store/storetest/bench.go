package storetest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// EnvelopeSize is the envelope the benchmarks queue: a typical sealed
// identity verification request.
const EnvelopeSize = 4 << 10

// Benchmark measures the store operations on the hot path: Accept (one
// message, one delivery, its acceptance entry) by one caller and by eight
// at once, Lease+Ack of one delivery (its "delivered" entry), and Message;
// then the retry and retention operations: Release, DeadLetter+Requeue,
// Purge. s must be empty, opened with Replica, and is not closed.
func Benchmark(b *testing.B, s store.Store) {
	ctx := context.Background()
	env := make([]byte, EnvelopeSize)
	for i := range env {
		env[i] = 'A' + byte(i%26)
	}
	seq := 0
	var parallel atomic.Int64 // ids of AcceptParallel, across the runs of b.N
	retention := 30
	acceptOne := func(b *testing.B, recipient string) {
		seq++
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", seq)
		m := message("unhcr", id, recipient, base)
		m.RetentionDays = retention
		d := store.Delivery{ID: "d-" + id, Recipient: recipient, Envelope: env, CreatedAt: base, VisibleAt: base}
		if _, err := s.Accept(ctx, m, []store.Delivery{d}, acceptEntry(m)); err != nil {
			b.Fatalf("Accept: %v", err)
		}
	}

	b.Run("Accept", func(b *testing.B) {
		for b.Loop() {
			acceptOne(b, "bench-accept")
		}
	})
	b.Run("AcceptParallel", func(b *testing.B) {
		// Flat out: 8 callers at once on 2 cores (GOMAXPROCS × 4), as the
		// gateway's requests in flight; reported as accepts a second.
		b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("p%07d-0000-4000-8000-000000000000", parallel.Add(1))
				m := message("unhcr", id, "bench-parallel", base)
				m.RetentionDays = retention
				d := store.Delivery{ID: "d-" + id, Recipient: "bench-parallel", Envelope: env, CreatedAt: base, VisibleAt: base}
				if _, err := s.Accept(ctx, m, []store.Delivery{d}, acceptEntry(m)); err != nil {
					b.Errorf("Accept: %v", err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accepts/s")
	})
	b.Run("LeaseAck", func(b *testing.B) {
		// A queue a few thousand deep, as under a recipient's outage.
		b.StopTimer()
		for range 2000 {
			acceptOne(b, "bench-lease")
		}
		b.StartTimer()
		now := base
		for b.Loop() {
			b.StopTimer()
			acceptOne(b, "bench-lease")
			b.StartTimer()
			now = now.Add(time.Millisecond)
			ds, err := s.Lease(ctx, "bench-lease", 1, time.Hour, now)
			if err != nil || len(ds) != 1 {
				b.Fatalf("Lease: %d deliveries, %v", len(ds), err)
			}
			if err := s.Ack(ctx, "bench-lease", ds[0].ID, now); err != nil {
				b.Fatalf("Ack: %v", err)
			}
		}
	})
	b.Run("Release", func(b *testing.B) {
		// A failed attempt on a queue a few thousand deep.
		const n = 2000
		first := seq + 1
		for range n {
			acceptOne(b, "bench-release")
		}
		i := 0
		for b.Loop() {
			id := fmt.Sprintf("d-%08d-0000-4000-8000-000000000000", first+i%n)
			if err := s.Release(ctx, "bench-release", id, base.Add(time.Duration(i)*time.Millisecond)); err != nil {
				b.Fatalf("Release: %v", err)
			}
			i++
		}
	})
	b.Run("DeadLetterRequeue", func(b *testing.B) {
		acceptOne(b, "bench-dead")
		id := fmt.Sprintf("d-%08d-0000-4000-8000-000000000000", seq)
		for b.Loop() {
			if err := s.DeadLetter(ctx, "bench-dead", id, base); err != nil {
				b.Fatalf("DeadLetter: %v", err)
			}
			if err := s.Requeue(ctx, "bench-dead", id, base); err != nil {
				b.Fatalf("Requeue: %v", err)
			}
		}
	})
	// Everything accepted so far is due 30 days after base: thousands of
	// messages in the retention index, none due in the two cases below.
	b.Run("PurgeNothingDue", func(b *testing.B) {
		for b.Loop() {
			if ps, err := s.Purge(ctx, base.Add(24*time.Hour)); err != nil || len(ps) != 0 {
				b.Fatalf("Purge: %d, %v", len(ps), err)
			}
		}
	})
	b.Run("Purge100", func(b *testing.B) {
		// 100 messages due, each with one queued 4 KiB envelope: purged
		// and forgotten (their exp passed long before), two entries each.
		const batch = 100
		retention = 1
		defer func() { retention = 30 }()
		for b.Loop() {
			b.StopTimer()
			for range batch {
				acceptOne(b, "bench-purge")
			}
			b.StartTimer()
			ps, err := s.Purge(ctx, base.Add(24*time.Hour))
			if err != nil || len(ps) != batch {
				b.Fatalf("Purge: %d purged, %v", len(ps), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/msg")
	})
	b.Run("Message", func(b *testing.B) {
		acceptOne(b, "bench-message")
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", seq)
		for b.Loop() {
			if _, err := s.Message(ctx, "unhcr", id); err != nil {
				b.Fatalf("Message: %v", err)
			}
		}
	})
}
