// Package store declares the state the gateway keeps and the small
// interfaces through which it is reached. The rules are written once, in
// kvstore, over the key-value contract kv; bolt and redis are kvstore over
// its drivers, with what is the file's or the server's own, and pass the
// contract suite (this package's contract_*_test.go).
//
// Personal data never enters the store in clear: a message's payload is kept
// only as the sealed delivery envelope (encrypted to the recipient), and the
// metadata below carries identifiers, digests and rule ids only.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/audit"
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
	// ErrUnavailable wraps any failure of the backing store to write or
	// read: what the call would have changed was not changed. Callers
	// answer 503.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrOutcomeUnknown: the change was sent to the backing store but its
	// answer was lost (the connection broke or the deadline passed after
	// the request went out), and the store could not find out since
	// whether it took effect. It comes with ErrUnavailable. Only a store
	// that talks to a server returns it; a caller reads the record back
	// (Message) to learn the truth.
	ErrOutcomeUnknown = errors.New("store: outcome unknown")
	// ErrInvalidInput: the store refuses a key or a value for what it
	// contains (not because it cannot write): nothing was written, and
	// sending the same again fails the same way. Callers answer 422.
	ErrInvalidInput = errors.New("store: invalid input")
	// ErrDamaged: the store's file holds pages or records that are not
	// what the store wrote; it comes with ErrUnavailable. `xborder store
	// check` says where.
	ErrDamaged = errors.New("store: damaged")
	// ErrInvalidKey: an identifier that no record can have (empty, or
	// with a NUL byte, which the stores use as a separator).
	ErrInvalidKey = fmt.Errorf("%w: empty identifier or identifier with NUL", ErrInvalidInput)
)

// ValidKeys returns ErrInvalidKey for the first identifier that cannot be a
// store key.
func ValidKeys(keys ...string) error {
	for _, k := range keys {
		if k == "" || strings.IndexByte(k, 0) >= 0 {
			return ErrInvalidKey
		}
	}
	return nil
}

// ValidMessage refuses what no store can keep: no message, or a message
// whose from, id or to cannot be a key.
func ValidMessage(m *Message) error {
	if m == nil {
		return errNilMessage
	}
	return ValidKeys(m.From, m.ID, m.To)
}

// ValidAcceptance is ValidMessage for an acceptance, which also indexes the
// message under its consent id when it has one.
func ValidAcceptance(m *Message) error {
	if err := ValidMessage(m); err != nil {
		return err
	}
	if m.ConsentID != "" && ValidKeys(m.ConsentID) != nil {
		return fmt.Errorf("consent: %w", ErrInvalidKey)
	}
	return nil
}

var errNilMessage = errors.New("nil message")

// Message is the metadata of one message the gateway decided on. It is
// the message's replay reservation (PROTOCOL §6) and the status its sender
// and recipient read (§5), and it is kept until ForgetAt; then Purge
// deletes it.
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
	// 200) for a byte-identical retry. It holds the receipt only (no
	// payload) and is kept after a purge, as long as the record.
	Answer []byte `json:"answer,omitempty"`
	// Purged is set once the retention period ended and the message's
	// payloads (the envelopes of its deliveries) were deleted (R13); the
	// metadata above is kept until ForgetAt, which is usually the same
	// time (then the record is deleted and nobody reads Purged).
	Purged   bool      `json:"purged,omitempty"`
	PurgedAt time.Time `json:"purged_at,omitzero"`
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
	// DeadLetteredAt is set on the deliveries DeadLetters returns.
	DeadLetteredAt time.Time `json:"dead_lettered_at,omitzero"`
}

// Messages keeps message metadata and makes acceptance atomic.
type Messages interface {
	// Accept records an accepted message, enqueues its deliveries and
	// appends entries (prepared with audit.Prepare for the store's replica)
	// to its audit chain in one atomic, durable step: after it returns nil,
	// a crash loses nothing, and if it fails none of it happened (unless
	// the error is ErrOutcomeUnknown). When (m.From, m.ID) was accepted
	// before, nothing is written and the existing record is returned with
	// ErrDuplicate. A previous denial of the same (from, id) does not block
	// acceptance.
	Accept(ctx context.Context, m *Message, ds []Delivery, entries ...audit.Entry) (*Message, error)
	// RecordDenial stores the metadata of a denied message, unless (from,
	// id) was already accepted, and appends e to the audit chain, in one
	// atomic step; e is appended in either case.
	RecordDenial(ctx context.Context, m *Message, e audit.Entry) error
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
	// Ack removes the delivery from the recipient's queue, marks its
	// message delivered and appends the delivery's "delivered" entry
	// (DeliveryEntry) in one atomic step. ErrNotFound if the recipient has
	// no such delivery.
	Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error
	// Delivery returns a queued delivery of the recipient (leased or not)
	// without changing it, or ErrNotFound.
	Delivery(ctx context.Context, recipient, deliveryID string) (*Delivery, error)
	// Depth is the number of deliveries waiting for the recipient (leased or
	// not; dead letters are not counted).
	Depth(ctx context.Context, recipient string) (int, error)
	// Depths is Depth for every recipient, for a metrics gauge. Every
	// recipient with a queued delivery is present; a recipient whose queue
	// has emptied may be present with 0.
	Depths(ctx context.Context) (map[string]int, error)

	// Release ends a failed attempt: the delivery (leased or not) becomes
	// visible again at visibleAt; its attempts are kept (Lease counted this
	// one). The backoff is the caller's. ErrNotFound if the recipient has no
	// such delivery queued.
	Release(ctx context.Context, recipient, deliveryID string, visibleAt time.Time) error
	// DeadLetter takes the delivery out of the queue into the dead-letter
	// set, envelope and attempts kept so that it can be requeued, and marks
	// its message dead_lettered (UpdatedAt = now), and appends the
	// delivery's "dead_lettered" entry (DeliveryEntry), in one atomic step.
	// ErrNotFound if the recipient has no such delivery queued.
	DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error
	// DeadLetters lists every dead letter of every recipient, the oldest
	// (first dead-lettered) first, with its envelope and DeadLetteredAt.
	DeadLetters(ctx context.Context) ([]Delivery, error)
	// Requeue puts a dead letter back into its recipient's queue, visible
	// now, with its attempts reset to 0. Its message is accepted again
	// (UpdatedAt = now) once none of its deliveries is dead-lettered.
	// ErrNotFound if there is no such dead letter.
	Requeue(ctx context.Context, recipient, deliveryID string, now time.Time) error
}

// Consents remembers which recipients received referrals under a consent,
// and which consents were withdrawn (R16). Accept indexes (m.From,
// m.ConsentID) -> the recipients of m's deliveries whenever m.ConsentID is
// set, atomically with the rest of the message.
type Consents interface {
	// ConsentRecipients returns the recipients of the messages accepted
	// from `from` under consentID: sorted, distinct, empty if none.
	ConsentRecipients(ctx context.Context, from, consentID string) ([]string, error)
	// WithdrawConsent records that `from` withdrew consentID. Withdrawing
	// again changes nothing.
	WithdrawConsent(ctx context.Context, from, consentID string, now time.Time) error
	// ConsentWithdrawn reports whether `from` withdrew consentID.
	ConsentWithdrawn(ctx context.Context, from, consentID string) (bool, error)
}

// Purged is one message a Purge deleted something of.
type Purged struct {
	From, ID string
	// Deliveries is how many envelopes (queued or dead-lettered) were
	// deleted; acknowledged ones were deleted by Ack already.
	Deliveries int
	// Payloads: its retention period ended and its payloads were purged
	// (a "purged" entry). False for a denial, which has none, and for a
	// message whose payloads an earlier Purge deleted.
	Payloads bool
	// Forgotten: its metadata was deleted (a "forgotten" entry).
	Forgotten bool
}

// Retention deletes payloads whose retention period ended (R13), and then
// the metadata of messages that nobody needs to remember any more.
type Retention interface {
	// Purge does, for every message whose next step is due by now (see
	// Message.Retire, which both stores follow), that step:
	//
	//   - an accepted message with RetentionDays > 0 whose PurgeAt <= now
	//     and that was not purged yet: its queued and dead-lettered
	//     deliveries (envelopes included) are deleted, Purged and PurgedAt
	//     = now set, and a "purged" entry (PurgeEntry) appended;
	//   - a message whose payloads are gone (a denial, or an accepted
	//     message purged by now) and whose ForgetAt <= now: its record is
	//     deleted with everything that belongs only to it — the
	//     recipient-side entry MessageTo reads (if it points at it), its
	//     place in the retention schedule, any delivery left — and a
	//     "forgotten" entry (ForgetEntry) appended. Message and MessageTo
	//     then answer ErrNotFound, and Accept of the same (from, id) is a
	//     new message. The consent index (ConsentRecipients) and the
	//     withdrawals are not the message's: they stay, for R16.
	//
	// Each step is atomic with its entry; a message due for both has both
	// done at once, "purged" first. It returns the messages it changed,
	// in the order they were due. Nothing is deleted before it is due:
	// backends keep these times to at least the millisecond, rounded up;
	// an accepted message without a retention period is never purged nor
	// forgotten. The work is bounded by the number of messages due (a
	// bounded batch per transaction or script), not by the size of the
	// store. On error, what was done before the failure is returned with
	// the error.
	Purge(ctx context.Context, now time.Time) ([]Purged, error)
}

// Settler is a store whose server may hold changes its replicas do not
// hold yet (a change answered ErrOutcomeUnknown, then read back). Settle
// returns nil once everything it holds is held as an acknowledgement
// requires, else an ErrOutcomeUnknown with ErrUnavailable. An answer built
// from a record a read found (a retry's 200, the 202 or 403 of a read-back)
// is given only after it.
type Settler interface {
	Settle(ctx context.Context) error
}

// Store is everything the exchange needs from its state. It is also the
// audit log's backend: the chains live in the store, so that a change and
// its entry are one write (Append is for the events that are not changes of
// the store).
type Store interface {
	Messages
	Queue
	Consents
	Retention
	audit.Backend
	// Ping reports whether the store can durably write now: it writes (at
	// most once a second; the result is kept in between).
	Ping(ctx context.Context) error
	Close() error
}

// DeliveryEntry is the audit entry of a delivery's end (kind
// audit.KindDelivered or KindDeadLettered); m is its message, if still
// known. Both stores build the entries of Ack and DeadLetter with it.
func DeliveryEntry(d Delivery, m *Message, kind string) audit.Entry {
	e := audit.Entry{Kind: kind, MessageID: d.MessageID, From: d.MessageFrom, To: d.Recipient}
	if m != nil {
		e.DecisionID, e.PolicyVersion, e.Purpose, e.Type = m.DecisionID, m.PolicyVersion, m.Purpose, m.Type
	}
	sum := sha256.Sum256(d.Envelope)
	e.PayloadSHA256 = hex.EncodeToString(sum[:])
	return e
}

// PurgeEntry is the audit entry of the purge of m's payloads (R13). Both
// stores build the entries of Purge with it.
func PurgeEntry(m *Message) audit.Entry {
	return audit.Entry{Kind: audit.KindPurged, MessageID: m.ID, From: m.From, To: m.To,
		DecisionID: m.DecisionID, PolicyVersion: m.PolicyVersion, Purpose: m.Purpose, Type: m.Type}
}

// ForgetEntry is the audit entry of the deletion of m's metadata. Both
// stores build the entries of Purge with it.
func ForgetEntry(m *Message) audit.Entry {
	e := PurgeEntry(m)
	e.Kind = audit.KindForgotten
	return e
}

// PurgeAt is when the message's retention period ends: CreatedAt +
// RetentionDays×24h. ok is false when no retention period was given
// (RetentionDays <= 0): such a message is never purged.
func (m *Message) PurgeAt() (at time.Time, ok bool) {
	if m.RetentionDays <= 0 {
		return time.Time{}, false
	}
	// AddDate in UTC is exactly 24h a day and cannot overflow a Duration.
	return m.CreatedAt.UTC().AddDate(0, 0, m.RetentionDays), true
}

// ForgetAt is when the message's metadata may be deleted: the later of its
// Expires (its exp) and the end of its retention period (PurgeAt). Until
// exp the record is the replay reservation (PROTOCOL §6: a retry of an
// accepted message gets its answer, never a second acceptance); from exp
// on, the exchange refuses the message as expired whatever the store says.
// (exp is a NumericDate, compared by the exchange as a float; Expires is
// its conversion, at most a nanosecond short of it, far below the float's
// resolution, so that at Expires the exchange already sees exp <= now:
// TestRetireProperties holds it to that.) ok is false for an accepted
// message without a retention period: its payloads are never purged, and
// its metadata is kept with them. A denial has no payload: without a
// retention period it is forgotten at exp.
func (m *Message) ForgetAt() (at time.Time, ok bool) {
	at = m.Expires.UTC()
	purgeAt, retained := m.PurgeAt()
	switch {
	case retained && purgeAt.After(at):
		at = purgeAt
	case !retained && m.Status != StatusDenied:
		return time.Time{}, false
	}
	return at, true
}

// Retirement is what one Purge does to one message.
type Retirement struct {
	// Purge: its payloads go now (R13).
	Purge bool
	// Forget: its metadata goes now (after its payloads, if Purge too).
	Forget bool
	// Next is when the message is due again (not forgotten); zero when
	// never.
	Next time.Time
}

// Retire says what a Purge at now does to m, as the store keeps it (its
// Status and Purged): purge its payloads once PurgeAt has passed, forget
// it once its payloads are gone (or it never had any, a denial) and
// ForgetAt has passed, and otherwise when to look at it again. Both
// stores follow it, and check it against the record itself before they
// delete anything, whatever their schedule says.
func (m *Message) Retire(now time.Time) Retirement {
	var r Retirement
	if m.Status != StatusDenied && !m.Purged {
		at, ok := m.PurgeAt()
		switch {
		case !ok:
			return r // never purged, so never forgotten
		case at.After(now):
			r.Next = at
			return r
		}
		r.Purge = true
	}
	at, ok := m.ForgetAt()
	switch {
	case !ok:
	case at.After(now):
		r.Next = at
	default:
		r.Forget = true
	}
	return r
}
