package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Retry says how PostRetry (and, set as Client.Retry, every other request
// of a client) retries.
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

// NotSent reports whether err is a connection that failed before the
// request was written (the gateway is not there, or refused it): retrying
// such a request cannot do anything twice.
func NotSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// PostRetry posts an already sealed envelope and, while the gateway answers
// 503 or the connection fails, posts the same bytes again after a backoff
// (PROTOCOL §3.2: the retry of a message that was accepted after all gets
// 200 with the original answer; a message is never signed again under a new
// id). It returns the last answer, or the last error.
func (c *Client) PostRetry(ctx context.Context, sealed []byte, o Retry) (*Response, error) {
	return c.retry(ctx, o, true, func() (*Response, error) { return c.Post(ctx, sealed) })
}

// retry runs do until it gives an answer that is not 503, or attempts run
// out. A failed connection is retried when anyErr (the request is safe to
// repeat), else only when the request was never sent (NotSent).
func (c *Client) retry(ctx context.Context, o Retry, anyErr bool, do func() (*Response, error)) (*Response, error) {
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
		r, err := do()
		again := Retryable(r) || (err != nil && (anyErr || NotSent(err)))
		if !again || attempt >= o.Attempts || ctx.Err() != nil {
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

// do is Do under c.Retry when it is set (Attempts > 1): the key fetch, the
// inbox and its acknowledgements. GETs are retried on any failed
// connection; other requests only when they were never sent.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) (*Response, error) {
	if c.Retry == nil || c.Retry.Attempts <= 1 {
		return c.Do(ctx, method, path, contentType, body)
	}
	return c.retry(ctx, *c.Retry, method == http.MethodGet, func() (*Response, error) {
		return c.Do(ctx, method, path, contentType, body)
	})
}
