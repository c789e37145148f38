// Package adapters declares how a delivery reaches its recipient. Each
// adapter lives in its own subpackage; every one passes adaptertest.
package adapters

import "context"

// Delivery is one sealed envelope for one recipient (PROTOCOL §4).
type Delivery struct {
	ID        string // delivery_id, also the Idempotency-Key of a push
	Recipient string
	MessageID string
	Envelope  []byte // compact JWE encrypted to the recipient
}

// Adapter hands a delivery to its recipient. It returns nil only when the
// recipient has taken responsibility for it; any error means "try again".
type Adapter interface {
	Deliver(ctx context.Context, d Delivery) error
}
