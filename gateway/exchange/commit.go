package exchange

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
)

// commit and refuse are the stations that end the road; the store calls
// below them are shared. A denial or an acceptance is stored
// together with its audit entries in one step (store.Messages), and the
// answer says what the store did, never more.

// commit stores the acceptance durably, atomically with the replay
// reservation, its deliveries and its audit entries (accepted, and for a
// withdrawal consent_withdrawn), and answers 202.
func (x *Exchange) commit(ctx context.Context, s *submission) (*Answer, error) {
	s.leave() // the durable write holds no place: group commit gathers every writer
	msg, rec := s.msg, s.rec
	entries := []audit.Entry{x.entry(audit.KindAccepted, rec, msg, s.minimised)}
	if msg.Type == envelope.TypeConsentWithdrawal {
		entries = append(entries, x.entry(audit.KindConsentWithdrawn, rec, msg, nil))
	}
	ans, err := x.commitAcceptance(ctx, rec, s.deliveries, entries)
	if err != nil || ans.Status != 202 {
		return ans, err
	}
	x.o.Logger.Info("message accepted", "message_id", msg.ID, "decision_id", s.decisionID,
		"from", msg.From, "to", msg.To, "purpose", policy.Enum(msg.Purpose, policy.KnownPurpose),
		"type", policy.Enum(msg.Type, policy.KnownType))
	return ans, nil
}

// refuse records a denial with its audit entry and returns the refusal:
// no 403 without its committed entry.
func (x *Exchange) refuse(ctx context.Context, s *submission) error {
	s.leave()
	rec := x.record(s, store.StatusDenied)
	if err := x.recordDenial(ctx, rec, x.entry(audit.KindDenied, rec, s.msg, nil)); err != nil {
		return err
	}
	return &Error{Code: CodePolicyDenied, Detail: "the policy refused this message",
		DecisionID: s.decisionID, Reasons: s.decision.Reasons}
}

// The store calls that end Submit. A denial or an acceptance is stored
// together with its audit entries in one step (store.Messages), and the
// answer says what the store did, never more: no 403 without its committed
// entry, no 202 without the acceptance, and a 503 that says "nothing was
// accepted" only when that is known (PROTOCOL §3.2). When the store sent
// the change but lost its answer (store.ErrOutcomeUnknown), the record is
// read back to learn what happened; if even that cannot tell, the answer
// is 503 with detail "outcome_unknown", and the sender retries with the
// same signed message (a retry of an accepted one gets 200).

// DetailOutcomeUnknown is the detail of a 503 after which the gateway could
// not tell whether the write took effect.
const DetailOutcomeUnknown = "outcome_unknown"

// readBackTimeout bounds the read that settles an unknown outcome, which
// runs even if the request's own deadline has passed.
const readBackTimeout = 3 * time.Second

// recordDenial stores a denial with its entry. nil means both are
// committed and the 403 may go out; otherwise it returns the answer: 503
// (nothing was accepted, or outcome_unknown) or 422 (the store refuses the
// message's content).
func (x *Exchange) recordDenial(ctx context.Context, rec *store.Message, e audit.Entry) error {
	err := x.o.Store.RecordDenial(ctx, rec, e)
	if err == nil {
		return nil
	}
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		return storeFailure(err, "the gateway cannot record this decision now; nothing was accepted")
	}
	prev, rerr := x.readBack(ctx, rec)
	switch {
	case rerr == nil && prev.DecisionID == rec.DecisionID:
		// The denial and its entry are on the primary; the 403 waits
		// until its replicas hold them too.
		if serr := x.settle(ctx); serr != nil {
			return outcomeUnknown(errors.Join(err, serr))
		}
		return nil
	case errors.Is(rerr, store.ErrNotFound), rerr == nil && prev.Status == store.StatusDenied:
		// The denial writes its record whenever it applies (unless the id
		// was accepted): not there, so it did not apply.
		return storeFailure(err, "the gateway cannot record this decision now; nothing was accepted")
	}
	return outcomeUnknown(errors.Join(err, rerr))
}

// commitAcceptance stores the accepted message, its deliveries and its
// audit entries in one step and returns the answer: 202 (or, for a copy
// that won a race, what a retry gets), or the error to answer.
func (x *Exchange) commitAcceptance(ctx context.Context, rec *store.Message, ds []store.Delivery, entries []audit.Entry) (*Answer, error) {
	prev, err := x.o.Store.Accept(ctx, rec, ds, entries...)
	switch {
	case err == nil:
		return &Answer{Status: 202, Body: rec.Answer}, nil
	case errors.Is(err, store.ErrDuplicate):
		// Lost a race with a concurrent copy: answer as a retry would be.
		if ans, rerr := retryAnswer(prev, rec.JWSSHA256); ans != nil || rerr != nil {
			if ans != nil {
				if serr := x.settle(ctx); serr != nil {
					return nil, outcomeUnknown(errors.Join(err, serr))
				}
			}
			return ans, rerr
		}
		return nil, &Error{Code: CodeReplay, Detail: "this message id was accepted before"}
	case !errors.Is(err, store.ErrOutcomeUnknown):
		return nil, storeFailure(err, "the gateway cannot store messages now; nothing was accepted")
	}
	prev, rerr := x.readBack(ctx, rec)
	switch {
	case rerr == nil && prev.Status != store.StatusDenied && prev.DecisionID == rec.DecisionID &&
		prev.JWSSHA256 == rec.JWSSHA256 && len(prev.Answer) > 0:
		// This acceptance took effect on the primary: its answer, once
		// the replicas hold it too.
		if serr := x.settle(ctx); serr != nil {
			return nil, outcomeUnknown(errors.Join(err, serr))
		}
		return &Answer{Status: 202, Body: prev.Answer}, nil
	case rerr == nil && prev.Status != store.StatusDenied:
		// Another acceptance holds the id (this one did not take effect):
		// 200 for the same signed message, 409 for another.
		ans, aerr := retryAnswer(prev, rec.JWSSHA256)
		if ans != nil {
			if serr := x.settle(ctx); serr != nil {
				return nil, outcomeUnknown(errors.Join(err, serr))
			}
		}
		return ans, aerr
	case errors.Is(rerr, store.ErrNotFound), rerr == nil && prev.Status == store.StatusDenied:
		return nil, storeFailure(err, "the gateway cannot store messages now; nothing was accepted")
	}
	return nil, outcomeUnknown(errors.Join(err, rerr))
}

// settle waits until what the store's primary holds is held as an
// acknowledgement requires (store.Settler: the Redis replicas), even if
// the request's deadline has passed. A record read there may be one a
// commit applied on the primary alone (kv's not-replicated), which a
// failover would erase: an answer built from it waits for this.
func (x *Exchange) settle(ctx context.Context) error {
	s, ok := x.o.Store.(store.Settler)
	if !ok {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	return s.Settle(sctx)
}

// readBack reads (rec.From, rec.ID) after an unknown outcome, even if the
// request's deadline has passed.
func (x *Exchange) readBack(ctx context.Context, rec *store.Message) (*store.Message, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	return x.o.Store.Message(rctx, rec.From, rec.ID)
}

// storeFailure is the answer to a failed store call: 422 invalid_message
// for what the store refuses for its content (nothing to retry), 503
// unavailable with detail when the store cannot write, and an internal
// error for anything else (a bug, not the store).
func storeFailure(err error, detail string) error {
	switch {
	case errors.Is(err, store.ErrInvalidInput):
		return &Error{Code: string(envelope.CodeInvalidMessage),
			Detail: "an identifier of this message cannot be stored (empty, too long or with a NUL character)", Err: err}
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Code: CodeUnavailable, Detail: detail, Err: err}
	}
	return fmt.Errorf("exchange: store: %w", err)
}

func outcomeUnknown(err error) error {
	return &Error{Code: CodeUnavailable, Detail: DetailOutcomeUnknown, Err: err}
}

// unavailable is the answer to a failed store call on the way (a lookup,
// the withdrawal of a consent): 422 for content the store refuses, else
// 503, nothing accepted.
func unavailable(err error) error {
	if errors.Is(err, store.ErrInvalidInput) {
		return storeFailure(err, "")
	}
	return &Error{Code: CodeUnavailable, Detail: "the gateway cannot store messages now; nothing was accepted", Err: err}
}
