package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// EnvelopeSize is the envelope the benchmarks queue: a typical sealed
// identity verification request.
const EnvelopeSize = 4 << 10

// Benchmark measures the store operations on the hot path: Accept (one
// message, one delivery), Lease+Ack of one delivery, and Message. s must be
// empty and is not closed.
func Benchmark(b *testing.B, s store.Store) {
	ctx := context.Background()
	env := make([]byte, EnvelopeSize)
	for i := range env {
		env[i] = 'A' + byte(i%26)
	}
	seq := 0
	acceptOne := func(b *testing.B, recipient string) {
		seq++
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", seq)
		m := message("unhcr", id, recipient, base)
		d := store.Delivery{ID: "d-" + id, Recipient: recipient, Envelope: env, CreatedAt: base, VisibleAt: base}
		if _, err := s.Accept(ctx, m, []store.Delivery{d}); err != nil {
			b.Fatalf("Accept: %v", err)
		}
	}

	b.Run("Accept", func(b *testing.B) {
		for b.Loop() {
			acceptOne(b, "bench-accept")
		}
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
