package exchange

import (
	"context"
	"sync/atomic"
)

// admission bounds how many submissions do their processor-bound work
// (open, decide, redact, seal, sign) at once; the others wait their turn in
// arrival order (a channel's waiters are served first in, first out). A
// place is given back before the durable write, so that waiting for the disk
// holds none and group commit still gathers every writer. The idea: on two
// cores, dozens of submissions sharing the processors all finish late
// together; a few at a time, each finishes as soon as it can. Measured on a
// shared 2-core machine the p99 difference was within the noise, so it is
// off unless configured (README "Performance"). nil admits everything.
type admission = *places

type places struct {
	slots   chan struct{}
	waiting atomic.Int32 // submissions waiting for a place (for tests)
}

func newAdmission(n int) admission {
	if n <= 0 {
		return nil
	}
	return &places{slots: make(chan struct{}, n)}
}

// enter waits for a place, or for ctx to end (the sender went away).
func (a admission) enter(ctx context.Context) error {
	if a == nil {
		return nil
	}
	select {
	case a.slots <- struct{}{}:
		return nil
	default:
	}
	a.waiting.Add(1)
	defer a.waiting.Add(-1)
	select {
	case a.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave gives the place back.
func (a admission) leave() {
	if a != nil {
		<-a.slots
	}
}
