package exchange

import (
	"context"
	"errors"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store"
)

// commit stores the acceptance durably, atomically with the replay
// reservation, its deliveries (and, on a journal, its audit entry), and
// answers 202.
func (x *Exchange) commit(ctx context.Context, s *submission) (*Answer, error) {
	s.leave() // the durable write holds no place: group commit gathers every writer
	msg, rec := s.msg, s.rec
	var prev *store.Message
	var err error
	if x.journaled() {
		prev, err = x.o.Journal.Accept(ctx, rec, s.deliveries, x.entry(audit.KindAccepted, rec, msg, s.minimised))
	} else {
		prev, err = x.o.Store.Accept(ctx, rec, s.deliveries)
	}
	switch {
	case errors.Is(err, store.ErrDuplicate):
		// Lost a race with a concurrent copy: answer as a retry would be.
		if ans, rerr := retryAnswer(prev, s.opened.JWSSHA256); ans != nil || rerr != nil {
			return ans, rerr
		}
		return nil, &Error{Code: CodeReplay, Detail: "this message id was accepted before"}
	case err != nil:
		return nil, unavailable(err)
	}
	if !x.journaled() {
		x.audit(ctx, audit.KindAccepted, rec, msg, s.minimised)
	}
	if msg.Type == envelope.TypeConsentWithdrawal {
		x.audit(ctx, audit.KindConsentWithdrawn, rec, msg, nil)
	}
	x.o.Logger.Info("message accepted", "message_id", msg.ID, "decision_id", s.decisionID,
		"from", msg.From, "to", msg.To, "purpose", msg.Purpose, "type", msg.Type)
	return &Answer{Status: 202, Body: rec.Answer}, nil
}

// refuse records a denial (and its audit entry) and returns the refusal.
func (x *Exchange) refuse(ctx context.Context, s *submission) error {
	s.leave()
	rec := x.record(s, store.StatusDenied)
	if x.journaled() {
		if err := x.o.Journal.RecordDenial(ctx, rec, x.entry(audit.KindDenied, rec, s.msg, nil)); err != nil {
			// The denial stands whether or not it could be recorded.
			x.o.Logger.Error("could not record a denial or its audit entry", "decision_id", s.decisionID, "error", err)
		}
	} else {
		if err := x.o.Store.RecordDenial(ctx, rec); err != nil {
			// The denial stands whether or not it could be recorded.
			x.o.Logger.Error("could not record a denial", "decision_id", s.decisionID, "error", err)
		}
		x.audit(ctx, audit.KindDenied, rec, s.msg, nil)
	}
	return &Error{Code: CodePolicyDenied, Detail: "the policy refused this message",
		DecisionID: s.decisionID, Reasons: s.decision.Reasons}
}

func (x *Exchange) journaled() bool { return x.o.Journal != nil && x.o.Audit != nil }
