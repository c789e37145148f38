// Package exchange is the gateway's pipeline: open → identify → replay →
// decide → redact → seal → store durably → answer. Nothing reaches a
// recipient's queue before the policy allowed it, and nothing is answered
// 202 before it is stored.
package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

// Stable error codes the exchange adds to the envelope's (PROTOCOL §3.2).
const (
	CodeIdentityMismatch   = "identity_mismatch"
	CodeUnknownParticipant = "unknown_participant"
	CodeReplay             = "replay"
	CodePolicyDenied       = "policy_denied"
	CodeUnavailable        = "unavailable"
	CodeNotFound           = "not_found"
	CodeForbidden          = "forbidden"
)

// Error is a refusal with a stable code and a detail safe to show the caller.
type Error struct {
	Code       string
	Detail     string
	DecisionID string
	Reasons    []policy.Reason
	Err        error // internal cause, logged with the error id, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "exchange: " + e.Code + ": " + e.Err.Error()
	}
	return "exchange: " + e.Code
}

func (e *Error) Unwrap() error { return e.Err }

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

// Options are the exchange's dependencies.
type Options struct {
	Registry       Registry
	Policy         Policy
	Store          store.Store
	SigningKey     *envelope.PrivateKey   // the gateway's current signing key
	DecryptionKeys []*envelope.PrivateKey // the gateway's encryption keys (several during a rotation)
	Profile        envelope.Profile
	Clock          func() time.Time
	Logger         *slog.Logger
	// OnDecision, when set, is told of every decision (for metrics).
	OnDecision func(allow bool, rules []string)
	// Audit, when set, gives the subject hash of the audit entries the
	// store appends with each acceptance and denial.
	Audit Auditor
	// MaxInflight bounds the submissions doing their processor-bound work
	// at once (0: no bound); the others wait in arrival order.
	MaxInflight int
}

// Auditor is the audit log as the exchange uses it.
type Auditor interface {
	SubjectHash(ref string) string
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

// AnswerBody is the JSON of PROTOCOL §3.1.
type AnswerBody struct {
	ID            string   `json:"id"`
	Status        string   `json:"status"`
	DecisionID    string   `json:"decision_id"`
	PolicyVersion string   `json:"policy_version"`
	Redacted      []string `json:"redacted"`
	Receipt       string   `json:"receipt"`
}

// Receipt is the payload the gateway signs for the sender (PROTOCOL §3.1).
type Receipt struct {
	ID             string `json:"id"`
	From           string `json:"from"`
	To             string `json:"to"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
	AcceptedAt     string `json:"accepted_at"`
	DecisionID     string `json:"decision_id"`
	PolicyVersion  string `json:"policy_version"`
}

// DeliveryPayload is what the gateway signs for the recipient (PROTOCOL §4).
type DeliveryPayload struct {
	DeliveryID string         `json:"delivery_id"`
	Message    map[string]any `json:"message"`
	Provenance Provenance     `json:"provenance"`
}

// Provenance tells the recipient where the message came from and what the
// gateway did to it.
type Provenance struct {
	SenderJWSSHA256 string   `json:"sender_jws_sha256"`
	SenderKID       string   `json:"sender_kid"`
	ReceivedAt      string   `json:"received_at"`
	DecisionID      string   `json:"decision_id"`
	PolicyVersion   string   `json:"policy_version"`
	Redacted        []string `json:"redacted"`
}

// Submit takes one request body from the participant authenticated as
// identity by mTLS.
func (x *Exchange) Submit(ctx context.Context, identity string, body []byte) (*Answer, error) {
	if err := x.admit.enter(ctx); err != nil {
		return nil, &Error{Code: CodeUnavailable, Detail: "the request ended before its turn; nothing was accepted", Err: err}
	}
	held := true
	leave := func() { // before the durable write, or on the way out
		if held {
			held = false
			x.admit.leave()
		}
	}
	defer leave()
	now := x.o.Clock().UTC()
	reg := x.o.Registry.Load()
	if reg == nil {
		return nil, &Error{Code: CodeUnavailable, Detail: "trust registry not loaded"}
	}
	profile := x.o.Profile
	profile.DeferTimeCheck = true // checked below, after the replay lookup
	opener := envelope.Opener{Profile: profile, DecryptionKeys: x.o.DecryptionKeys, Keys: reg}
	op, err := opener.Open(body, now)
	if err != nil {
		return nil, err
	}
	msg := op.Message

	// Identify: from is registered, signed it and holds the TLS identity.
	sender, ok := reg.Participant(msg.From)
	if !ok {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "sender is not in the registry"}
	}
	if op.Signer != msg.From || identity != msg.From {
		return nil, &Error{Code: CodeIdentityMismatch, Detail: "from, the signing key's owner and the TLS identity differ"}
	}
	if sender.Suspended {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "sender is suspended"}
	}
	recipient, ok := reg.Participant(msg.To)
	if !ok {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "recipient is not in the registry"}
	}
	if recipient.Suspended {
		return nil, &Error{Code: CodeUnknownParticipant, Detail: "recipient is suspended"}
	}

	// Replay: a byte-identical retry gets the original answer.
	if prev, err := x.o.Store.Message(ctx, msg.From, msg.ID); err == nil {
		if ans, err := retryAnswer(prev, op.JWSSHA256); ans != nil || err != nil {
			return ans, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, unavailable(err)
	}
	if err := msg.CheckTime(now, x.o.Profile); err != nil {
		return nil, err
	}

	// Decide.
	in, err := x.input(ctx, now, msg, sender, recipient)
	if err != nil {
		return nil, err
	}
	bundle := x.o.Policy.Current()
	decisionID := uuid.NewString()
	var dec policy.Decision
	version := ""
	if bundle == nil {
		dec = policy.Deny("no policy is loaded")
		err = errors.New("no policy bundle")
	} else {
		version = bundle.Version
		dec, err = bundle.Decide(ctx, in)
	}
	if err != nil {
		errID := uuid.NewString()
		x.o.Logger.Error("policy evaluation failed; denying", "error_id", errID, "decision_id", decisionID, "error", err)
		dec = policy.Deny("the policy could not decide (error " + errID + ")")
	}
	rules := dec.Rules()
	x.logDecision(ctx, decisionID, version, in, dec, rules)
	if x.o.OnDecision != nil {
		x.o.OnDecision(dec.Allow, rules)
	}

	rec := &store.Message{
		From: msg.From, ID: msg.ID, To: msg.To, Type: msg.Type, Purpose: msg.Purpose,
		InReplyTo:           msg.InReplyTo,
		RequestedAssertions: stringList(msg.Record, "requested_assertions"),
		ConsentID:           reliesOn(msg),
		JWSSHA256:           op.JWSSHA256,
		DecisionID:          decisionID,
		PolicyVersion:       version,
		Rules:               rules,
		Redacted:            dec.Redact,
		RetentionDays:       dec.Obligations.RetentionDays,
		Expires:             time.Unix(msg.EXP, 0).UTC(),
		CreatedAt:           now,
		UpdatedAt:           now,
	}
	if !dec.Allow {
		leave()
		rec.Status = store.StatusDenied
		// No 403 without its committed audit entry (commit.go).
		if err := x.recordDenial(ctx, rec, x.entry(audit.KindDenied, rec, msg, nil)); err != nil {
			return nil, err
		}
		return nil, &Error{Code: CodePolicyDenied, Detail: "the policy refused this message",
			DecisionID: decisionID, Reasons: dec.Reasons}
	}

	// Minimise, seal for each recipient, sign the receipt.
	redacted := dec.Redact
	if redacted == nil {
		redacted = []string{}
	}
	receivedAt := now.Format(time.RFC3339)
	recipients := []*trust.Participant{recipient}
	if msg.Type == envelope.TypeConsentWithdrawal {
		// R16: the consent is withdrawn from now on, and every recipient of
		// an earlier referral under it is told. Withdrawing first is safe:
		// it is idempotent, and a retry after a crash here redoes the rest.
		if recipients, err = x.withdraw(ctx, reg, msg, recipient, now); err != nil {
			return nil, err
		}
	}
	minimised := Redact(msg.Raw, redacted)
	deliveries := make([]store.Delivery, 0, len(recipients))
	for _, r := range recipients {
		deliveryID := uuid.NewString()
		payload, err := json.Marshal(DeliveryPayload{
			DeliveryID: deliveryID,
			Message:    minimised,
			Provenance: Provenance{
				SenderJWSSHA256: op.JWSSHA256, SenderKID: op.SenderKID, ReceivedAt: receivedAt,
				DecisionID: decisionID, PolicyVersion: version, Redacted: redacted,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("exchange: delivery payload: %w", err)
		}
		sealed, err := envelope.Seal(payload, x.o.SigningKey, envelope.TypDelivery, r.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("exchange: seal delivery: %w", err)
		}
		deliveries = append(deliveries, store.Delivery{
			ID: deliveryID, Recipient: r.ID, MessageFrom: msg.From, MessageID: msg.ID,
			Envelope: sealed, CreatedAt: now, VisibleAt: now,
		})
	}
	bodySum := sha256.Sum256(body)
	receiptJSON, err := json.Marshal(Receipt{
		ID: msg.ID, From: msg.From, To: msg.To, EnvelopeSHA256: hex.EncodeToString(bodySum[:]),
		AcceptedAt: receivedAt, DecisionID: decisionID, PolicyVersion: version,
	})
	if err != nil {
		return nil, fmt.Errorf("exchange: receipt: %w", err)
	}
	receipt, err := envelope.Sign(receiptJSON, x.o.SigningKey, envelope.TypReceipt)
	if err != nil {
		return nil, fmt.Errorf("exchange: sign receipt: %w", err)
	}
	answer, err := json.Marshal(AnswerBody{
		ID: msg.ID, Status: store.StatusAccepted, DecisionID: decisionID,
		PolicyVersion: version, Redacted: redacted, Receipt: string(receipt),
	})
	if err != nil {
		return nil, fmt.Errorf("exchange: answer: %w", err)
	}
	rec.Status = store.StatusAccepted
	rec.Answer = answer

	// Store durably, atomically with the replay reservation and the audit
	// entries (commit.go).
	leave()
	entries := []audit.Entry{x.entry(audit.KindAccepted, rec, msg, minimised)}
	if msg.Type == envelope.TypeConsentWithdrawal {
		entries = append(entries, x.entry(audit.KindConsentWithdrawn, rec, msg, nil))
	}
	ans, err := x.commitAcceptance(ctx, rec, deliveries, entries)
	if err != nil || ans.Status != 202 {
		return ans, err
	}
	x.o.Logger.Info("message accepted", "message_id", msg.ID, "decision_id", decisionID,
		"from", msg.From, "to", msg.To, "purpose", msg.Purpose, "type", msg.Type)
	return ans, nil
}

// entry is the audit entry of a decision: metadata, the subject reference
// only as its keyed hash, and the categories delivered — never values.
func (x *Exchange) entry(kind string, rec *store.Message, msg *envelope.Message, delivered map[string]any) audit.Entry {
	e := audit.Entry{
		Kind: kind, MessageID: rec.ID, DecisionID: rec.DecisionID, PolicyVersion: rec.PolicyVersion,
		From: rec.From, To: rec.To, Purpose: rec.Purpose, Type: rec.Type,
		Rules: rec.Rules, Redacted: LogPaths(rec.Redacted), PayloadSHA256: rec.JWSSHA256,
		Categories: LogPaths(Categories(delivered)),
	}
	if ref := stringField(msg.Subject, "ref"); ref != "" && x.o.Audit != nil {
		e.SubjectHash = x.o.Audit.SubjectHash(ref)
	}
	return e
}

// Categories lists the field paths under subject and record of a delivered
// message ("subject.names", "record.health"): what reached the recipient,
// never the values.
func Categories(msg map[string]any) []string {
	var out []string
	for _, section := range []string{"subject", "record"} {
		m, _ := msg[section].(map[string]any)
		for k := range m {
			out = append(out, section+"."+k)
		}
	}
	sort.Strings(out)
	return out
}

// reliesOn is the consent a message relies on: a withdrawal names one but
// does not rely on it.
func reliesOn(msg *envelope.Message) string {
	if msg.Type == envelope.TypeConsentWithdrawal {
		return ""
	}
	return stringField(msg.Consent, "id")
}

// withdraw records a consent withdrawal and returns who must be told: the
// addressed recipient and every participant that received a referral under
// the consent, less the suspended (R14) and the unknown.
func (x *Exchange) withdraw(ctx context.Context, reg *trust.Registry, msg *envelope.Message, to *trust.Participant, now time.Time) ([]*trust.Participant, error) {
	id := stringField(msg.Consent, "id")
	if err := x.o.Store.WithdrawConsent(ctx, msg.From, id, now); err != nil {
		return nil, unavailable(err)
	}
	earlier, err := x.o.Store.ConsentRecipients(ctx, msg.From, id)
	if err != nil {
		return nil, unavailable(err)
	}
	out := []*trust.Participant{to}
	for _, rid := range earlier {
		if rid == to.ID {
			continue
		}
		if p, ok := reg.Participant(rid); ok && !p.Suspended {
			out = append(out, p)
		}
	}
	x.o.Logger.Info("consent withdrawn", "message_id", msg.ID, "from", msg.From, "consent_id", id, "recipients_told", len(out))
	return out, nil
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

// input builds the DOMAIN §7 decision input.
func (x *Exchange) input(ctx context.Context, now time.Time, msg *envelope.Message, sender, recipient *trust.Participant) (policy.Input, error) {
	in := policy.Input{
		Now:       now.Format(time.RFC3339),
		Message:   msg.Raw,
		Sender:    party(sender),
		Recipient: party(recipient),
	}
	if id := stringField(msg.Consent, "id"); id != "" {
		w, err := x.o.Store.ConsentWithdrawn(ctx, msg.From, id)
		if err != nil {
			return in, unavailable(err)
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
			return in, unavailable(err)
		}
	}
	return in, nil
}

func party(p *trust.Participant) policy.Party {
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	return policy.Party{ID: p.ID, Kind: p.Kind, Country: p.Country, Roles: roles, Suspended: p.Suspended}
}

// logDecision writes the decision record (one per decision, allow or deny):
// identifiers, rule ids, redacted paths and the input with personal data
// masked, so that a compliance officer can see why without seeing whom.
func (x *Exchange) logDecision(ctx context.Context, id, version string, in policy.Input, d policy.Decision, rules []string) {
	if !x.o.Logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	msg := in.Message
	input := map[string]any{
		"now": in.Now, "message": MaskMessage(msg), "sender": in.Sender, "recipient": in.Recipient,
		"request": in.Request, "consent_withdrawn": in.ConsentWithdrawn,
	}
	x.o.Logger.LogAttrs(ctx, slog.LevelInfo, "decision",
		slog.String("decision_id", id), slog.String("policy_version", version),
		slog.Any("message_id", msg["id"]), slog.Any("from", msg["from"]), slog.Any("to", msg["to"]),
		slog.Any("purpose", msg["purpose"]), slog.Any("type", msg["type"]),
		slog.Bool("allow", d.Allow), slog.Any("rules", rules), slog.Any("redacted", LogPaths(d.Redact)),
		slog.Int("retention_days", d.Obligations.RetentionDays), slog.Bool("review", d.Obligations.Review),
		slog.Any("input", input))
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
