// Package store declares the state the gateway keeps and the small
// interfaces through which it is reached. Implementations live in
// subpackages (bolt, redis) and all pass the contract suite in storetest.
//
// Personal data never enters the store in clear: a message's payload is kept
// only as the sealed delivery envelope (encrypted to the recipient), and the
// metadata below carries identifiers, digests and rule ids only.
package store

import (
	"context"
	"errors"
	"time"
)

// Message statuses (PROTOCOL §5).
const (
	StatusAccepted     = "accepted"
	StatusDelivered    = "delivered"
	StatusDeadLettered = "dead_lettered"
	StatusDenied       = "denied"
)

// Errors shared by every implementation.
var (
	// ErrNotFound: no such message or delivery.
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate: (from, id) was accepted before; Accept returns the
	// existing record together with this error.
	ErrDuplicate = errors.New("store: duplicate message")
	// ErrUnavailable wraps any failure of the backing store; callers answer
	// 503 and accept nothing.
	ErrUnavailable = errors.New("store: unavailable")
)

// Message is the metadata of one message the gateway decided on.
type Message struct {
	From      string `json:"from"`
	ID        string `json:"id"`
	To        string `json:"to"`
	Type      string `json:"type"`
	Purpose   string `json:"purpose"`
	InReplyTo string `json:"in_reply_to,omitempty"`
	// RequestedAssertions of an identity.verification.request, kept so that
	// the answer can be checked against what was asked (R15).
	RequestedAssertions []string `json:"requested_assertions,omitempty"`
	// ConsentID of a referral, kept for withdrawal (R16).
	ConsentID string `json:"consent_id,omitempty"`

	Status        string    `json:"status"`
	Attempts      int       `json:"attempts"`
	JWSSHA256     string    `json:"jws_sha256"` // hex SHA-256 of the sender's inner JWS
	DecisionID    string    `json:"decision_id"`
	PolicyVersion string    `json:"policy_version"`
	Rules         []string  `json:"rules,omitempty"`
	Redacted      []string  `json:"redacted,omitempty"`
	RetentionDays int       `json:"retention_days,omitempty"`
	Expires       time.Time `json:"expires"` // the message's exp: replay memory lasts at least this long
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// Answer is the exact body of the original 202, returned again (with
	// 200) for a byte-identical retry.
	Answer []byte `json:"answer,omitempty"`
}

// Delivery is one sealed envelope on its way to one recipient.
type Delivery struct {
	ID          string    `json:"delivery_id"`
	Recipient   string    `json:"recipient"`
	MessageFrom string    `json:"message_from"`
	MessageID   string    `json:"message_id"`
	Envelope    []byte    `json:"envelope"` // compact JWE for the recipient
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	// VisibleAt: a leased delivery is hidden until then.
	VisibleAt time.Time `json:"visible_at"`
}

// Messages keeps message metadata and makes acceptance atomic.
type Messages interface {
	// Accept records an accepted message and enqueues its deliveries in one
	// atomic, durable step: after it returns nil, a crash loses nothing.
	// When (m.From, m.ID) was accepted before, nothing is written and the
	// existing record is returned with ErrDuplicate. A previous denial of
	// the same (from, id) does not block acceptance.
	Accept(ctx context.Context, m *Message, ds []Delivery) (*Message, error)
	// RecordDenial stores the metadata of a denied message unless (from, id)
	// was already accepted.
	RecordDenial(ctx context.Context, m *Message) error
	// Message returns the record of (from, id), or ErrNotFound.
	Message(ctx context.Context, from, id string) (*Message, error)
	// MessageTo returns the record of a message with this id addressed to
	// the recipient `to`, or ErrNotFound.
	MessageTo(ctx context.Context, to, id string) (*Message, error)
}

// Queue holds deliveries per recipient with a visibility timeout: a leased
// delivery not acknowledged in time is offered again (at least once).
type Queue interface {
	// Lease returns up to max visible deliveries of the recipient, oldest
	// first, hides them until now+visibility and counts an attempt.
	Lease(ctx context.Context, recipient string, max int, visibility time.Duration, now time.Time) ([]Delivery, error)
	// Ack removes the delivery from the recipient's queue and marks its
	// message delivered. ErrNotFound if the recipient has no such delivery.
	Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error
	// Depth is the number of deliveries waiting for the recipient (leased or not).
	Depth(ctx context.Context, recipient string) (int, error)
}

// Store is everything the exchange needs from its state.
type Store interface {
	Messages
	Queue
	// Ping reports whether the store can be written now.
	Ping(ctx context.Context) error
	Close() error
}
