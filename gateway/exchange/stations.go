package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/gateway/wire"
)

// submission is one request on its way down the road: each station reads
// what the ones before it left and adds its own part.
type submission struct {
	identity string // the TLS identity
	body     []byte // the request body, as received
	now      time.Time
	reg      *trust.Registry // the registry in force when the request came in

	admit admission
	held  bool

	opened            *envelope.Opened  // open
	msg               *envelope.Message // open
	sender, recipient *trust.Participant
	input             policy.Input    // prepare
	decisionID        string          // decide
	version           string          // the policy version that decided
	decision          policy.Decision // decide (a failed check of the copy turns it into a denial)
	rules             []string
	minimised         map[string]any       // minimise: what every recipient reads
	redacted          []string             // minimise: exactly what was removed
	recipients        []*trust.Participant // address
	deliveries        []store.Delivery     // seal
	rec               *store.Message       // the record committed
}

// leave gives the submission's place back (before the durable write, or on
// the way out).
func (s *submission) leave() {
	if s.held {
		s.held = false
		s.admit.leave()
	}
}

// open decrypts the envelope with the gateway's keys, verifies the inner
// JWS with a registered key and parses the message strictly (envelope).
// The time window is checked later, after the replay lookup.
func (x *Exchange) open(_ context.Context, s *submission) (*Answer, error) {
	profile := x.o.Profile
	profile.DeferTimeCheck = true
	opener := envelope.Opener{Profile: profile, DecryptionKeys: x.o.DecryptionKeys, Keys: s.reg}
	op, err := opener.Open(s.body, s.now)
	if err != nil {
		return nil, err
	}
	s.opened, s.msg = op, op.Message
	return nil, nil
}

// identify checks that from is registered, signed the message and is the
// TLS identity, and that neither party is suspended (PROTOCOL §3.2).
func (x *Exchange) identify(_ context.Context, s *submission) (*Answer, error) {
	sender, ok := s.reg.Participant(s.msg.From)
	if !ok {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "sender is not in the registry"}
	}
	if s.opened.Signer != s.msg.From || s.identity != s.msg.From {
		return nil, &Error{Code: CodeIdentityMismatch, Detail: "from, the signing key's owner and the TLS identity differ"}
	}
	if sender.Suspended {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "sender is suspended"}
	}
	recipient, ok := s.reg.Participant(s.msg.To)
	if !ok {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "recipient is not in the registry"}
	}
	if recipient.Suspended {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "recipient is suspended"}
	}
	s.sender, s.recipient = sender, recipient
	return nil, nil
}

// replay answers a byte-identical retry of an accepted message with its
// original answer, and refuses a different message under an accepted id.
func (x *Exchange) replay(ctx context.Context, s *submission) (*Answer, error) {
	prev, err := x.o.Store.Message(ctx, s.msg.From, s.msg.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, unavailable(err)
	}
	ans, err := retryAnswer(prev, s.opened.JWSSHA256)
	if ans != nil {
		// The acceptance read may be on the primary alone (its commit
		// answered not-replicated): the 200 waits until it is held.
		if serr := x.settle(ctx); serr != nil {
			return nil, outcomeUnknown(serr)
		}
	}
	return ans, err
}

// checkTime checks iat and exp against the gateway clock (PROTOCOL §2).
func (x *Exchange) checkTime(_ context.Context, s *submission) (*Answer, error) {
	return nil, s.msg.CheckTime(s.now, x.o.Profile)
}

// prepare builds the DOMAIN §7 decision input: the registry facts of both
// parties, whether the consent relied on was withdrawn, and the metadata of
// the request a response answers.
func (x *Exchange) prepare(ctx context.Context, s *submission) (*Answer, error) {
	msg := s.msg
	in := policy.Input{
		Now:       s.now.Format(time.RFC3339),
		Message:   msg.Raw,
		Sender:    party(s.sender),
		Recipient: party(s.recipient),
	}
	if id := stringField(msg.Consent, "id"); id != "" {
		w, err := x.o.Store.ConsentWithdrawn(ctx, msg.From, id)
		if err != nil {
			return nil, unavailable(err)
		}
		in.ConsentWithdrawn = w
	}
	if strings.HasSuffix(msg.Type, ".response") && msg.InReplyTo != "" {
		// The request answered was sent by this response's recipient.
		req, err := x.o.Store.Message(ctx, msg.To, msg.InReplyTo)
		switch {
		case err == nil:
			if req.To == msg.From && req.Status != store.StatusDenied {
				in.Request = &policy.Request{
					ID: req.ID, Type: req.Type, From: req.From, To: req.To,
					Purpose: req.Purpose, RequestedAssertions: req.RequestedAssertions,
				}
			}
		case errors.Is(err, store.ErrNotFound):
		default:
			return nil, unavailable(err)
		}
	}
	s.input = in
	return nil, nil
}

func party(p *trust.Participant) policy.Party {
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	return policy.Party{ID: p.ID, Kind: p.Kind, Country: p.Country, Roles: roles, Suspended: p.Suspended}
}

// decide asks the policy in force. An error, an undefined decision or a
// timeout is a denial (R1).
func (x *Exchange) decide(ctx context.Context, s *submission) (*Answer, error) {
	s.decisionID = uuid.NewString()
	bundle := x.o.Policy.Current()
	var err error
	if bundle == nil {
		s.decision, err = policy.Deny("no policy is loaded"), errors.New("no policy bundle")
	} else {
		s.version = bundle.Version
		s.decision, err = bundle.Decide(ctx, s.input)
	}
	if err != nil {
		errID := uuid.NewString()
		x.o.Logger.Error("policy evaluation failed; denying", "error_id", errID, "decision_id", s.decisionID, "error", err)
		s.decision = policy.Deny("the policy could not decide (error " + errID + ")")
		return nil, nil
	}
	if x.o.Shadow != nil {
		x.o.Shadow(ctx, s.decisionID, s.input, s.decision, s.version)
	}
	return nil, nil
}

// minimise removes what an allowing decision removed and checks the copy,
// by an independent walk (CheckDelivered), before anything is sealed: a
// copy that fails is denied (R1) and never delivered. The decision that
// stands is then logged and counted.
func (x *Exchange) minimise(ctx context.Context, s *submission) (*Answer, error) {
	if s.decision.Allow {
		s.minimised, s.redacted = Minimise(s.msg.Raw, s.decision.Redact)
		if err := CheckDelivered(s.msg.Raw, s.minimised, s.decision.Redact); err != nil {
			errID := uuid.NewString()
			x.o.Logger.Error("the minimised copy failed its check; denying", "error_id", errID, "decision_id", s.decisionID, "error", err)
			s.decision = policy.Deny("the gateway could not verify what the recipient would receive (error " + errID + ")")
			s.minimised, s.redacted = nil, nil
		}
	}
	s.rules = s.decision.Rules()
	x.logDecision(ctx, s.decisionID, s.version, s.input, s.decision, s.rules)
	if x.o.OnDecision != nil {
		x.o.OnDecision(s.decision.Allow, s.rules)
	}
	return nil, nil
}

// deny commits a denial with its audit entry and refuses the message.
func (x *Exchange) deny(ctx context.Context, s *submission) (*Answer, error) {
	if s.decision.Allow {
		return nil, nil
	}
	return nil, x.refuse(ctx, s)
}

// Minimise is the copy of msg a recipient reads under a decision that
// removes paths, and the list of what was removed (never nil).
func Minimise(msg map[string]any, redact []string) (map[string]any, []string) {
	redacted := redact
	if redacted == nil {
		redacted = []string{}
	}
	return Redact(msg, redact), redacted
}

// address decides who receives the message: its recipient, and for a
// consent withdrawal (R16) also every participant that received a referral
// under the consent, less the suspended (R14) and the unknown. The
// withdrawal is recorded first: it is idempotent, and a retry after a crash
// here redoes the rest.
func (x *Exchange) address(ctx context.Context, s *submission) (*Answer, error) {
	s.recipients = []*trust.Participant{s.recipient}
	if s.msg.Type != envelope.TypeConsentWithdrawal {
		return nil, nil
	}
	msg := s.msg
	id := stringField(msg.Consent, "id")
	if err := x.o.Store.WithdrawConsent(ctx, msg.From, id, s.now); err != nil {
		return nil, unavailable(err)
	}
	earlier, err := x.o.Store.ConsentRecipients(ctx, msg.From, id)
	if err != nil {
		return nil, unavailable(err)
	}
	for _, rid := range earlier {
		if rid == s.recipient.ID {
			continue
		}
		if p, ok := s.reg.Participant(rid); ok && !p.Suspended {
			s.recipients = append(s.recipients, p)
		}
	}
	x.o.Logger.Info("consent withdrawn", "message_id", msg.ID, "from", msg.From, "recipients_told", len(s.recipients))
	return nil, nil
}

// seal signs the minimised message with its provenance and encrypts it to
// each recipient's key from the registry: one delivery per recipient.
func (x *Exchange) seal(_ context.Context, s *submission) (*Answer, error) {
	s.deliveries = make([]store.Delivery, 0, len(s.recipients))
	for _, r := range s.recipients {
		deliveryID := uuid.NewString()
		payload, err := json.Marshal(wire.DeliveryPayload{
			DeliveryID: deliveryID,
			Message:    s.minimised,
			Provenance: wire.Provenance{
				SenderJWSSHA256: s.opened.JWSSHA256, SenderKID: s.opened.SenderKID,
				ReceivedAt: s.now.Format(time.RFC3339), DecisionID: s.decisionID,
				PolicyVersion: s.version, Redacted: s.redacted,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("exchange: delivery payload: %w", err)
		}
		sealed, err := envelope.Seal(payload, x.o.SigningKey, envelope.TypDelivery, r.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("exchange: seal delivery: %w", err)
		}
		s.deliveries = append(s.deliveries, store.Delivery{
			ID: deliveryID, Recipient: r.ID, MessageFrom: s.msg.From, MessageID: s.msg.ID,
			Envelope: sealed, CreatedAt: s.now, VisibleAt: s.now,
		})
	}
	return nil, nil
}

// sign makes the receipt and the answer of an acceptance, and the record
// that will be committed with them.
func (x *Exchange) sign(_ context.Context, s *submission) (*Answer, error) {
	msg := s.msg
	bodySum := sha256.Sum256(s.body)
	acceptedAt := s.now.Format(time.RFC3339)
	receiptJSON, err := json.Marshal(wire.Receipt{
		ID: msg.ID, From: msg.From, To: msg.To, EnvelopeSHA256: hex.EncodeToString(bodySum[:]),
		AcceptedAt: acceptedAt, DecisionID: s.decisionID, PolicyVersion: s.version,
	})
	if err != nil {
		return nil, fmt.Errorf("exchange: receipt: %w", err)
	}
	receipt, err := envelope.Sign(receiptJSON, x.o.SigningKey, envelope.TypReceipt)
	if err != nil {
		return nil, fmt.Errorf("exchange: sign receipt: %w", err)
	}
	answer, err := json.Marshal(wire.AnswerBody{
		ID: msg.ID, Status: store.StatusAccepted, DecisionID: s.decisionID,
		PolicyVersion: s.version, Redacted: s.redacted, Receipt: string(receipt),
	})
	if err != nil {
		return nil, fmt.Errorf("exchange: answer: %w", err)
	}
	s.rec = x.record(s, store.StatusAccepted)
	s.rec.Answer = answer
	return nil, nil
}

// record is the metadata of the submission's message, as the store keeps it.
func (x *Exchange) record(s *submission, status string) *store.Message {
	msg := s.msg
	return &store.Message{
		From: msg.From, ID: msg.ID, To: msg.To, Type: msg.Type, Purpose: msg.Purpose,
		InReplyTo:           msg.InReplyTo,
		RequestedAssertions: stringList(msg.Record, "requested_assertions"),
		ConsentID:           reliesOn(msg),
		Status:              status,
		JWSSHA256:           s.opened.JWSSHA256,
		DecisionID:          s.decisionID,
		PolicyVersion:       s.version,
		Rules:               s.rules,
		Redacted:            s.decision.Redact,
		RetentionDays:       s.decision.Obligations.RetentionDays,
		Expires:             msg.ExpiresAt(),
		CreatedAt:           s.now,
		UpdatedAt:           s.now,
	}
}

// reliesOn is the consent a message relies on: a withdrawal names one but
// does not rely on it.
func reliesOn(msg *envelope.Message) string {
	if msg.Type == envelope.TypeConsentWithdrawal {
		return ""
	}
	return stringField(msg.Consent, "id")
}

// retryAnswer returns the original answer for an identical retry, a replay
// error for a different message under the same id, and nothing when the
// earlier record was a denial (which does not reserve the id).
func retryAnswer(prev *store.Message, jwsSum string) (*Answer, error) {
	if prev == nil || prev.Status == store.StatusDenied {
		return nil, nil
	}
	if prev.JWSSHA256 == jwsSum && len(prev.Answer) > 0 {
		return &Answer{Status: 200, Body: prev.Answer}, nil
	}
	return nil, &Error{Code: CodeReplay, Detail: "this message id was accepted before with a different signed message"}
}

func stringField(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func stringList(m map[string]any, k string) []string {
	l, _ := m[k].([]any)
	var out []string
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
