// Package delivery takes accepted deliveries from the durable queue to the
// recipients whose registry entry pushes (https) or drops (file) them.
// Pull recipients (inbox) fetch their own.
//
// Delivery is at least once. A delivery is leased for longer than one
// attempt may take; if the worker (or its whole replica) dies, the lease
// runs out and another worker takes the delivery over. A failed attempt is
// released with exponential backoff and jitter; after MaxAttempts the
// delivery is dead-lettered, its message's status says so, and an operator
// can re-queue it.
package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/adapters/file"
	"github.com/xborder/xborder/adapters/https"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

// Queue is what the worker needs of the store. Ack and DeadLetter append
// the delivery's audit entry with the change (store.Queue).
type Queue interface {
	Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error)
	Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error
	Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error
	DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error
}

// Registry gives the registry in force (a *trust.Holder).
type Registry interface {
	Load() *trust.Registry
}

// Options configure the workers.
type Options struct {
	Queue    Queue
	Registry Registry
	// ClientCert is the gateway's certificate for mTLS pushes.
	ClientCert tls.Certificate
	// MaxAttempts before a delivery is dead-lettered (default 8).
	MaxAttempts int
	// AttemptTimeout bounds one attempt (default 10s).
	AttemptTimeout time.Duration
	// Backoff is the first retry delay (default 1s), doubled per attempt up
	// to MaxBackoff (default 5m), with full jitter.
	Backoff, MaxBackoff time.Duration
	// Poll is how often queues are looked at when idle (default 250ms).
	Poll time.Duration
	// Batch is how many deliveries of one recipient are leased at once (default 16).
	Batch  int
	Clock  func() time.Time
	Logger *slog.Logger
	// OnOutcome, when set, is told of each attempt: delivered, retry, dead_lettered.
	OnOutcome func(outcome string)
}

func (o *Options) defaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Worker delivers for every push and file recipient of the registry.
type Worker struct {
	o Options

	mu       sync.Mutex
	adapters map[string]cached // by participant id
}

type cached struct {
	d       trust.Delivery
	adapter adapters.Adapter
}

// New returns a worker; Run starts it.
func New(o Options) (*Worker, error) {
	if o.Queue == nil || o.Registry == nil {
		return nil, errors.New("delivery: queue and registry are required")
	}
	o.defaults()
	return &Worker{o: o, adapters: map[string]cached{}}, nil
}

// Backoff returns the delay before attempt n+1 after n failed attempts:
// full jitter over an exponentially growing cap.
func (w *Worker) Backoff(n int) time.Duration {
	d := w.o.Backoff
	for i := 1; i < n && d < w.o.MaxBackoff; i++ {
		d *= 2
	}
	if d > w.o.MaxBackoff {
		d = w.o.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// Run delivers until ctx ends.
func (w *Worker) Run(ctx context.Context) {
	t := time.NewTicker(w.o.Poll)
	defer t.Stop()
	defer w.closeAdapters()
	for {
		busy := w.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		if busy {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once makes one pass over every push and file recipient and reports
// whether it found anything to deliver.
func (w *Worker) Once(ctx context.Context) bool {
	reg := w.o.Registry.Load()
	if reg == nil {
		return false
	}
	busy := false
	var wg sync.WaitGroup
	for _, p := range reg.Participants() {
		if p.Suspended || (p.Delivery.Adapter != trust.AdapterHTTPS && p.Delivery.Adapter != trust.AdapterFile) {
			continue // a suspended participant receives nothing (R14); inbox recipients pull
		}
		ds, err := w.o.Queue.Lease(ctx, p.ID, w.o.Batch, w.o.AttemptTimeout*2, w.o.Clock())
		if err != nil {
			if ctx.Err() == nil {
				w.o.Logger.Error("cannot lease deliveries", "recipient", p.ID, "error", err)
			}
			continue
		}
		if len(ds) == 0 {
			continue
		}
		busy = true
		ad, err := w.adapter(reg, p)
		if err != nil {
			w.o.Logger.Error("no adapter for recipient", "recipient", p.ID, "error", err)
			for _, d := range ds {
				w.failed(ctx, d, err)
			}
			continue
		}
		// The batch goes out in parallel, so that every attempt ends (by its
		// timeout at worst) well within the lease.
		for _, d := range ds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.deliver(ctx, ad, d)
			}()
		}
	}
	wg.Wait()
	return busy
}

func (w *Worker) deliver(ctx context.Context, ad adapters.Adapter, d store.Delivery) {
	actx, cancel := context.WithTimeout(ctx, w.o.AttemptTimeout)
	err := ad.Deliver(actx, adapters.Delivery{ID: d.ID, Recipient: d.Recipient, MessageID: d.MessageID, Envelope: d.Envelope})
	cancel()
	if err != nil {
		w.failed(ctx, d, err)
		return
	}
	if err := w.o.Queue.Ack(ctx, d.Recipient, d.ID, w.o.Clock()); err != nil && !errors.Is(err, store.ErrNotFound) {
		// Delivered but not recorded: it will be offered again (at least once).
		w.o.Logger.Error("delivered but could not acknowledge", "delivery_id", d.ID, "recipient", d.Recipient, "error", err)
		return
	}
	w.outcome("delivered")
	w.o.Logger.Info("delivered", "delivery_id", d.ID, "message_id", d.MessageID, "recipient", d.Recipient, "attempts", d.Attempts)
}

func (w *Worker) failed(ctx context.Context, d store.Delivery, cause error) {
	now := w.o.Clock()
	if d.Attempts >= w.o.MaxAttempts {
		if err := w.o.Queue.DeadLetter(ctx, d.Recipient, d.ID, now); err != nil {
			w.o.Logger.Error("cannot dead-letter", "delivery_id", d.ID, "error", err)
			return
		}
		w.outcome("dead_lettered")
		w.o.Logger.Warn("dead-lettered", "delivery_id", d.ID, "message_id", d.MessageID, "recipient", d.Recipient,
			"attempts", d.Attempts, "error", cause.Error())
		return
	}
	next := w.Backoff(d.Attempts)
	if err := w.o.Queue.Release(ctx, d.Recipient, d.ID, now.Add(next)); err != nil {
		// The lease runs out by itself; the delivery comes back then.
		w.o.Logger.Error("cannot reschedule", "delivery_id", d.ID, "error", err)
	}
	w.outcome("retry")
	w.o.Logger.Info("delivery failed; will retry", "delivery_id", d.ID, "recipient", d.Recipient,
		"attempts", d.Attempts, "retry_in", next.String(), "error", cause.Error())
}

func (w *Worker) outcome(o string) {
	if w.o.OnOutcome != nil {
		w.o.OnOutcome(o)
	}
}

// adapter returns the (cached) adapter for a participant, rebuilt when its
// registry entry changes.
func (w *Worker) adapter(reg *trust.Registry, p *trust.Participant) (adapters.Adapter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.adapters[p.ID]; ok && c.d == p.Delivery {
		return c.adapter, nil
	}
	if c, ok := w.adapters[p.ID]; ok {
		closeAdapter(c.adapter)
		delete(w.adapters, p.ID)
	}
	var ad adapters.Adapter
	var err error
	switch p.Delivery.Adapter {
	case trust.AdapterHTTPS:
		roots := x509.NewCertPool()
		for _, a := range reg.Anchors() {
			roots.AddCert(a)
		}
		ad, err = https.New(https.Options{URL: p.Delivery.URL, AllowPrivate: p.Delivery.AllowPrivate,
			ClientCert: w.o.ClientCert, RootCAs: roots, Timeout: w.o.AttemptTimeout})
	case trust.AdapterFile:
		ad, err = file.New(p.Delivery.Dir)
	default:
		err = fmt.Errorf("delivery: %s has no push adapter", p.ID)
	}
	if err != nil {
		return nil, err
	}
	w.adapters[p.ID] = cached{d: p.Delivery, adapter: ad}
	return ad, nil
}

func (w *Worker) closeAdapters() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, c := range w.adapters {
		closeAdapter(c.adapter)
		delete(w.adapters, id)
	}
}

func closeAdapter(a adapters.Adapter) {
	if c, ok := a.(io.Closer); ok {
		_ = c.Close()
	}
}
