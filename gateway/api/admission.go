package api

import "context"

// admission bounds how many submissions are worked on at once; the others
// wait their turn in arrival order (a channel's waiters are served first in,
// first out). On two cores, 64 submissions sharing the processors all finish
// late together; four at a time, each finishes as soon as it can: measured
// at a steady 500 msg/s, p99 ≈ 120 ms unbounded against ≈ 30–55 ms at four
// (README "Performance"). The body is read before a submission waits, so a
// slow sender holds no place. nil admits everything.
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
