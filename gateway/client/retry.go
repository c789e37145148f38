package client

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Retry says how PostRetry retries.
type Retry struct {
	// Attempts in all, the first one included (default 4).
	Attempts int
	// Backoff is the wait before the second attempt (default 500 ms),
	// doubled before each next one, with jitter; a Retry-After of the
	// gateway is waited for instead when it is longer (up to MaxBackoff).
	Backoff time.Duration
	// MaxBackoff bounds one wait (default 8 s).
	MaxBackoff time.Duration
	// OnRetry, when set, is told of each retry before its wait: the answer
	// that caused it (nil with err for a connection that failed).
	OnRetry func(attempt int, r *Response, err error, wait time.Duration)
}

// Retryable reports whether an answer asks the sender to try again with
// the same signed message: 503 unavailable, with or without detail
// outcome_unknown (PROTOCOL §3.2).
func Retryable(r *Response) bool {
	return r != nil && r.Status == http.StatusServiceUnavailable
}

// PostRetry posts an already sealed envelope and, while the gateway answers
// 503 or the connection fails, posts the same bytes again after a backoff
// (PROTOCOL §3.2: the retry of a message that was accepted after all gets
// 200 with the original answer; a message is never signed again under a new
// id). It returns the last answer, or the last error.
func (c *Client) PostRetry(ctx context.Context, sealed []byte, o Retry) (*Response, error) {
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 8 * time.Second
	}
	wait := o.Backoff
	for attempt := 1; ; attempt++ {
		r, err := c.Post(ctx, sealed)
		if (err == nil && !Retryable(r)) || attempt >= o.Attempts || ctx.Err() != nil {
			return r, err
		}
		d := wait/2 + rand.N(wait/2+1)
		if r != nil {
			if s, perr := strconv.Atoi(r.Header.Get("Retry-After")); perr == nil && time.Duration(s)*time.Second > d {
				d = time.Duration(s) * time.Second
			}
		}
		d = min(d, o.MaxBackoff)
		if o.OnRetry != nil {
			o.OnRetry(attempt, r, err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return r, err
		case <-t.C:
		}
		wait = min(wait*2, o.MaxBackoff)
	}
}
