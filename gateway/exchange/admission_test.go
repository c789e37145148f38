package exchange

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAdmissionBoundsConcurrency(t *testing.T) {
	a := newAdmission(3)
	var now, peak atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.enter(context.Background()); err != nil {
				t.Error(err)
				return
			}
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			now.Add(-1)
			a.leave()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p < 1 || p > 3 {
		t.Fatalf("peak concurrency %d, want 1..3", p)
	}
}

func TestAdmissionWaitEndsWithContext(t *testing.T) {
	a := newAdmission(1)
	if err := a.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.enter(ctx); err == nil {
		t.Fatal("entered a full admission")
	}
	a.leave()
	if err := a.enter(context.Background()); err != nil {
		t.Fatalf("after leave: %v", err)
	}
	var none admission // unbounded
	for range 100 {
		if err := none.enter(ctx); err != nil {
			t.Fatal(err)
		}
	}
	none.leave()
}
