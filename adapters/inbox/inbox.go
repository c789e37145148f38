// Package inbox is the pull adapter of PROTOCOL §4: deliveries wait in the
// recipient's queue until the recipient fetches them over the exchange API
// and acknowledges them. A fetched delivery that is not acknowledged within
// the visibility timeout is offered again.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/gateway/store"
)

// MaxFetch bounds one fetch.
const MaxFetch = 100

// Queue is what the inbox needs of the store (declared here, by its user):
// lease a recipient's deliveries, acknowledge one.
type Queue interface {
	Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]store.Delivery, error)
	Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error
}

// Inbox serves the pull side of the recipients' queues.
type Inbox struct {
	Queue      Queue
	Visibility time.Duration
	Clock      func() time.Time
}

// Item is one entry of GET /v1/inbox.
type Item struct {
	DeliveryID string `json:"delivery_id"`
	MessageID  string `json:"message_id"`
	Envelope   string `json:"envelope"`
}

// Deliver is a no-op: for a pull recipient the durable queue written at
// acceptance is the inbox. It exists so that every delivery mode shares one
// interface.
func (in *Inbox) Deliver(context.Context, adapters.Delivery) error { return nil }

var _ adapters.Adapter = (*Inbox)(nil)

func (in *Inbox) now() time.Time {
	if in.Clock != nil {
		return in.Clock()
	}
	return time.Now()
}

// Fetch leases up to max deliveries of the recipient.
func (in *Inbox) Fetch(ctx context.Context, recipient string, max int) ([]Item, error) {
	if max <= 0 {
		max = 10
	}
	if max > MaxFetch {
		max = MaxFetch
	}
	ds, err := in.Queue.Lease(ctx, recipient, max, in.Visibility, in.now())
	if err != nil {
		return nil, fmt.Errorf("inbox: fetch: %w", err)
	}
	items := make([]Item, 0, len(ds))
	for _, d := range ds {
		items = append(items, Item{DeliveryID: d.ID, MessageID: d.MessageID, Envelope: string(d.Envelope)})
	}
	return items, nil
}

// Ack removes a delivery from the recipient's inbox; the store appends its
// "delivered" audit entry in the same step. ErrNotFound when the recipient
// has no such delivery (already acked, or someone else's).
func (in *Inbox) Ack(ctx context.Context, recipient, deliveryID string) error {
	err := in.Queue.Ack(ctx, recipient, deliveryID, in.now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("inbox: ack: %w", err)
	}
	return err
}
