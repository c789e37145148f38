package exchange

import "context"

// admission bounds how many submissions do their processor-bound work
// (open, decide, redact, seal, sign) at once; the others wait their turn in
// arrival order (a channel's waiters are served first in, first out). A
// place is given back before the durable write, so that waiting for the disk
// holds none and group commit still gathers every writer. The idea: on two
// cores, dozens of submissions sharing the processors all finish late
// together; a few at a time, each finishes as soon as it can. Measured on a
// shared 2-core machine the p99 difference was within the noise, so it is
// off unless configured (README "Performance"). nil admits everything.
type admission chan struct{}

func newAdmission(n int) admission {
	if n <= 0 {
		return nil
	}
	return make(admission, n)
}

// enter waits for a place, or for ctx to end (the sender went away).
func (a admission) enter(ctx context.Context) error {
	if a == nil {
		return nil
	}
	select {
	case a <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave gives the place back.
func (a admission) leave() {
	if a != nil {
		<-a
	}
}
