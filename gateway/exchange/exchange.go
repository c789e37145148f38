// Package exchange is the gateway's pipeline. A submission walks one road
// of named stations (Submit lists them): open → identify → replay → check
// the time → prepare the decision input → decide → minimise → (deny) →
// address → seal → sign → commit. Nothing reaches a recipient's queue before the
// policy allowed it and the minimised copy passed its own check, and
// nothing is answered 202 before it is stored with its audit entry.
package exchange

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

// Registry is where participants and their keys come from; a *trust.Holder
// satisfies it, so a reloaded registry takes effect on the next message.
type Registry interface {
	Load() *trust.Registry
}

// Policy gives the bundle in force; the decision and the version it reports
// come from the same bundle.
type Policy interface {
	Current() *policy.Bundle
}

// Store is the part of the gateway's state the exchange uses (a
// store.Store satisfies it).
type Store interface {
	// Accept and RecordDenial commit the change with its audit entries,
	// both or neither: see store.Messages.
	Accept(ctx context.Context, m *store.Message, ds []store.Delivery, entries ...audit.Entry) (*store.Message, error)
	RecordDenial(ctx context.Context, m *store.Message, e audit.Entry) error
	Message(ctx context.Context, from, id string) (*store.Message, error)
	MessageTo(ctx context.Context, to, id string) (*store.Message, error)
	store.Consents
}

// Auditor is the audit log as the exchange uses it: the keyed hash of a
// subject reference (the entries themselves are the store's to append).
type Auditor interface {
	SubjectHash(ref string) string
}

// Options are the exchange's dependencies.
type Options struct {
	Registry       Registry
	Policy         Policy
	Store          Store
	SigningKey     *envelope.PrivateKey   // the gateway's current signing key
	DecryptionKeys []*envelope.PrivateKey // the gateway's encryption keys (several during a rotation)
	Profile        envelope.Profile
	Clock          func() time.Time
	Logger         *slog.Logger
	// OnDecision, when set, is told of every decision (for metrics).
	OnDecision func(allow bool, rules []string)
	// Shadow, when set, is given every decision the policy made, after it
	// was made, with its input and the policy version, on the request's
	// goroutine: it must return at once (hand the work to a bounded queue)
	// and must not modify in. The live decision alone acts.
	Shadow func(ctx context.Context, decisionID string, in policy.Input, live policy.Decision, version string)
	// Audit, when set, gives the subject hash of the audit entries the
	// store appends with each acceptance and denial.
	Audit Auditor
	// MaxInflight bounds the submissions doing their processor-bound work
	// at once (0: no bound); the others wait in arrival order.
	MaxInflight int
}

// Exchange runs the pipeline.
type Exchange struct {
	o     Options
	admit admission
}

// New checks the options and returns the pipeline.
func New(o Options) (*Exchange, error) {
	var errs []error
	if o.Registry == nil {
		errs = append(errs, errors.New("exchange: no registry"))
	}
	if o.Policy == nil {
		errs = append(errs, errors.New("exchange: no policy"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("exchange: no store"))
	}
	if o.SigningKey == nil {
		errs = append(errs, errors.New("exchange: no gateway signing key"))
	}
	if len(o.DecryptionKeys) == 0 {
		errs = append(errs, errors.New("exchange: no gateway encryption key"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Exchange{o: o, admit: newAdmission(o.MaxInflight)}, nil
}

// Answer is what the sender gets back: 202 with a fresh answer, or 200 with
// the original answer for a byte-identical retry.
type Answer struct {
	Status int
	Body   []byte
}

// Submit takes one request body from the participant authenticated as
// identity by mTLS, and walks it down the road.
func (x *Exchange) Submit(ctx context.Context, identity string, body []byte) (*Answer, error) {
	s, err := x.begin(ctx, identity, body)
	if err != nil {
		return nil, err
	}
	defer s.leave()
	return s.walk(ctx,
		x.open,      // decrypt, verify, parse strictly (envelope)
		x.identify,  // from is registered, signed it and holds the TLS identity; to is registered
		x.replay,    // an identical retry gets its original answer
		x.checkTime, // iat and exp (after replay: a late retry still gets its answer)
		x.prepare,   // the decision input: registry facts, consent withdrawn, the request answered
		x.decide,    // the policy (an error, a timeout, no decision: a denial, R1)
		x.minimise,  // remove what the policy removed; check the copy (a copy that fails: a denial, R1)
		x.deny,      // a denial is committed with its audit entry and refused
		x.address,   // who receives it (a consent withdrawal reaches every earlier recipient)
		x.seal,      // one delivery per recipient, signed and encrypted to its key
		x.sign,      // the receipt and the answer
		x.commit,    // durable, with the audit entry; 202
	)
}

// station is one step of the road. It returns an answer to end the walk
// early with (a retry's 200), an error to refuse with, or neither to go on.
type station func(context.Context, *submission) (*Answer, error)

// walk runs the stations in order until one answers or refuses.
func (s *submission) walk(ctx context.Context, stations ...station) (*Answer, error) {
	for _, st := range stations {
		if ans, err := st(ctx, s); ans != nil || err != nil {
			return ans, err
		}
	}
	return nil, errors.New("exchange: the road ended without an answer")
}

// begin waits for a place among the submissions being worked on and fixes
// the submission's clock and registry.
func (x *Exchange) begin(ctx context.Context, identity string, body []byte) (*submission, error) {
	if err := x.admit.enter(ctx); err != nil {
		return nil, &Error{Code: CodeUnavailable, Detail: "the request ended before its turn; nothing was accepted", Err: err}
	}
	s := &submission{identity: identity, body: body, now: x.o.Clock().UTC(), reg: x.o.Registry.Load(), admit: x.admit, held: true}
	if s.reg == nil {
		s.leave()
		return nil, &Error{Code: CodeUnavailable, Detail: "trust registry not loaded"}
	}
	return s, nil
}
