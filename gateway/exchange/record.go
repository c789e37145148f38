package exchange

import (
	"context"
	"log/slog"
	"sort"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
)

// entry is the audit entry of a decision: metadata, the subject reference
// only as its keyed hash, and the categories delivered — never values. A
// purpose or type outside the catalogue is the sender's word and is masked.
func (x *Exchange) entry(kind string, rec *store.Message, msg *envelope.Message, delivered map[string]any) audit.Entry {
	e := audit.Entry{
		Kind: kind, MessageID: rec.ID, DecisionID: rec.DecisionID, PolicyVersion: rec.PolicyVersion,
		From: rec.From, To: rec.To,
		Purpose: policy.Enum(rec.Purpose, policy.KnownPurpose), Type: policy.Enum(rec.Type, policy.KnownType),
		Rules: rec.Rules, Redacted: policy.LogPaths(rec.Redacted), PayloadSHA256: rec.JWSSHA256,
		Categories: policy.LogPaths(Categories(delivered)),
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

// logDecision writes the decision record (one per decision, allow or deny):
// identifiers, rule ids, redacted paths and the input with personal data
// masked (policy.Masker: closed vocabularies and protocol facts only,
// references as keyed hashes), so that a compliance officer can see why
// without seeing whom.
func (x *Exchange) logDecision(ctx context.Context, id, version string, in policy.Input, d policy.Decision, rules []string) {
	if !x.o.Logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	msg := x.masker().Message(in.Message)
	input := map[string]any{
		"now": in.Now, "message": msg, "sender": in.Sender, "recipient": in.Recipient,
		"request": in.Request, "consent_withdrawn": in.ConsentWithdrawn,
	}
	x.o.Logger.LogAttrs(ctx, slog.LevelInfo, "decision",
		slog.String("decision_id", id), slog.String("policy_version", version),
		slog.Any("message_id", msg["id"]), slog.Any("from", msg["from"]), slog.Any("to", msg["to"]),
		slog.Any("purpose", msg["purpose"]), slog.Any("type", msg["type"]),
		slog.Bool("allow", d.Allow), slog.Any("rules", rules), slog.Any("redacted", policy.LogPaths(d.Redact)),
		slog.Int("retention_days", d.Obligations.RetentionDays), slog.Bool("review", d.Obligations.Review),
		slog.Any("input", input))
}

// masker masks messages for the decision log: references as the audit
// log's keyed hashes, participants shown when registered.
func (x *Exchange) masker() policy.Masker {
	mk := policy.Masker{Participant: func(id string) bool {
		reg := x.o.Registry.Load()
		if reg == nil {
			return false
		}
		_, ok := reg.Participant(id)
		return ok
	}}
	if x.o.Audit != nil {
		mk.Hash = x.o.Audit.SubjectHash
	}
	return mk
}
