package oracle_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/oracle"
	"github.com/xborder/xborder/gateway/policy/synth"
)

// minimal is a correct delivery of a test message written by hand from
// the R10 table, not from the oracle.
type minimal struct {
	msg      string
	in       func(t *testing.T, in *policy.Input)
	remove   [][]string // member paths the R10 table removes
	redacted []string
}

var cases = map[string]minimal{
	// s03: the allegations go (not on the rehabilitation list); the L4
	// psychosocial section stays for child-protection UNICEF.
	"referral": {msg: referral, remove: [][]string{{"record", "allegations"}}, redacted: []string{"record.allegations"}},
	// s01: location is not on the identity-verification request list.
	"verification": {msg: verification},
	// s11: the answer carries only ref and the asked assertions (R11).
	"answer": {msg: answer, in: func(t *testing.T, in *policy.Input) { in.Request = answerRequest() },
		remove:   [][]string{{"subject", "birth_date"}, {"record", "registry_record"}},
		redacted: []string{"record.registry_record", "subject.birth_date"}},
	// s08: protection data never goes to a prosecutor (R8).
	"evidence": {msg: evidence, remove: [][]string{{"record", "psychosocial"}}, redacted: []string{"record.psychosocial"}},
}

func build(t *testing.T, m minimal) (policy.Input, map[string]any) {
	in := inputOf(t, m.msg)
	if m.in != nil {
		m.in(t, &in)
	}
	d := synth.CloneValue(in.Message).(map[string]any)
	for _, p := range m.remove {
		drop(d, p...)
	}
	return in, d
}

// TestCorrectDeliveriesPass: the minimal deliveries of DOMAIN's examples
// are accepted as they are.
func TestCorrectDeliveriesPass(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	for name, m := range cases {
		in, d := build(t, m)
		if vs := o.Check(in, true, d, m.redacted); len(vs) > 0 {
			t.Errorf("%s: a correct delivery judged wrong:%s", name, show(vs))
		}
		// The oracle's own reference agrees with the hand-written one.
		ref, red := o.Minimise(in)
		if !slices.Equal(red, m.redacted) {
			t.Errorf("%s: Minimise removes %v, the R10 table %v", name, red, m.redacted)
		}
		if vs := o.Check(in, true, ref, red); len(vs) > 0 {
			t.Errorf("%s: Minimise's delivery judged wrong:%s", name, show(vs))
		}
	}
}

// TestLeaks: each rule catches its leak in a hand-built delivery.
func TestLeaks(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	type leak struct {
		name   string
		base   string
		change func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string // red: the base's; returns redacted
		rule   string
		path   string
	}
	add := func(v any, names ...string) func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
		return func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(in.Message, v, names...)
			put(d, synth.CloneValue(v), names...)
			return red
		}
	}
	for _, l := range []leak{
		{"a dotted member in record", "referral", add("trauma symptoms", "record", "psychosocial.assessment"), "R10", "record.<unlisted>"},
		{"a dotted member in subject", "verification", add("tpl-77", "subject", "biometrics.template_ref"), "R10", "subject.<unlisted>"},
		{"a dotted member is refused before the policy", "referral", add("x", "record", "gbv.notes"), "PROTOCOL-2", "record.<invalid>"},
		{"a lookalike section name", "referral", add(map[string]any{"disclosed": true}, "record", "GBV"), "R10", "record.<unlisted>"},
		{"an unknown consent member", "referral", add("x", "consent", "signature"), "R10", "consent.<unlisted>"},
		{"an unknown override member", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			ov := map[string]any{"approved_by_role": "child-protection", "bia_ref": "BIA-1", "caseworker": "x"}
			put(in.Message, "best_interests_override", "consent", "basis")
			put(in.Message, ov, "consent", "override")
			put(d, "best_interests_override", "consent", "basis")
			put(d, synth.CloneValue(ov), "consent", "override")
			return []string{"record.allegations"}
		}, "R10", "consent.override.<unlisted>"},
		{"an unknown member inside names", "referral", add("x", "subject", "names", "nickname"), "R10", "subject.names.<unlisted>"},
		{"a member of another structure inside documents", "verification", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			docs := []any{map[string]any{"code": "P", "ref": "S-0002"}}
			put(in.Message, docs, "subject", "documents")
			put(d, synth.CloneValue(docs), "subject", "documents")
			return nil
		}, "R10", "subject.documents.ref"},
		{"L4 to a humanitarian recipient", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.Recipient, in.Message["to"], d["to"] = party(t, "UN-IOM"), "UN-IOM", "UN-IOM"
			put(in.Message, []any{"UN-IOM"}, "consent", "recipients")
			put(d, []any{"UN-IOM"}, "consent", "recipients")
			return []string{"record.allegations"}
		}, "R10", "record.psychosocial"},
		{"L4 for prosecution", "evidence", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(d, synth.CloneValue(in.Message["record"].(map[string]any)["psychosocial"]), "record", "psychosocial")
			return nil
		}, "R8", "record.psychosocial"},
		{"a child's biometrics to law enforcement", "verification", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.Recipient.Roles = []string{"civil-registry", "law-enforcement"}
			return nil
		}, "R6", "subject.biometrics"},
		{"biometrics one-to-many", "verification", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(in.Message, "1:N", "subject", "biometrics", "mode")
			put(d, "1:N", "subject", "biometrics", "mode")
			return nil
		}, "R12", "subject.biometrics"},
		{"biometrics without a DPIA", "verification", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			drop(in.Message, "subject", "biometrics", "dpia_id")
			drop(d, "subject", "biometrics", "dpia_id")
			return nil
		}, "R12", "subject.biometrics"},
		{"the registry record in an answer", "answer", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(d, synth.CloneValue(in.Message["record"].(map[string]any)["registry_record"]), "record", "registry_record")
			return []string{"subject.birth_date"}
		}, "R11", "record.<unlisted>"},
		{"a birth date in an answer", "answer", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(d, "2018-04-12", "subject", "birth_date")
			return []string{"record.registry_record"}
		}, "R11", "subject.birth_date"},
		{"an assertion nobody asked", "answer", add(true, "record", "document_valid"), "R15", "record.document_valid"},
		{"fields_confirmed when identity_match was not asked", "answer", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.Request.RequestedAssertions = []string{"nationality_confirmed"}
			put(in.Message, []any{"names"}, "record", "fields_confirmed")
			put(d, []any{"names"}, "record", "fields_confirmed")
			return red
		}, "R15", "record.fields_confirmed"},
		{"legal status without legal aid", "referral", add(map[string]any{"status": "no charges"}, "record", "legal_status"), "R10", "record.legal_status"},
		{"a child's notes in a repatriation referral", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.Message["purpose"], d["purpose"] = "repatriation-logistics", "repatriation-logistics"
			rec := map[string]any{"service_type": "travel", "notes": "x"}
			in.Message["record"], d["record"] = rec, synth.CloneValue(rec)
			return nil
		}, "R10", "record.notes"},
		{"protection data smuggled inside a value field", "referral", add(map[string]any{"gbv": "x"}, "record", "priority"), "R10", "record.priority.gbv"},
		{"a changed value", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(d, "low", "record", "priority")
			return red
		}, "PROTOCOL-4", "record.priority"},
		{"a changed number", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			d["iat"] = json.Number("1780315201")
			return red
		}, "PROTOCOL-4", "iat"},
		{"an invented member", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			put(d, "x", "record", "review")
			return red
		}, "PROTOCOL-4", "record.<unlisted>"},
		{"a removal not listed", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			drop(d, "subject", "sex")
			return red
		}, "R10", "subject.sex"},
		{"redacted lists what was never there", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			return []string{"record.allegations", "subject.biometrics"}
		}, "R10", "subject.biometrics"},
		{"redacted lists what was delivered", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			return []string{"record.allegations", "record.health"}
		}, "R10", "record.health"},
		{"a withdrawal carries only consent.id", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.Message["type"], d["type"] = "consent.withdrawal", "consent.withdrawal"
			c := map[string]any{"id": "C-2026-001", "recipients": []any{"UN-UNICEF", "UN-IOM"}}
			in.Message["consent"], d["consent"] = c, synth.CloneValue(c)
			delete(d, "record")
			d["subject"] = map[string]any{"ref": "S-0001"}
			return []string{"record", "subject.birth_date", "subject.birth_date_basis", "subject.location", "subject.names",
				"subject.nationality_claimed", "subject.relationships", "subject.sex"}
		}, "R10", "consent.recipients"},
		{"a top-level member outside PROTOCOL §2", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			d["trace"] = "x"
			return red
		}, "R10", "<unlisted>"},
		{"a denied message delivered", "referral", func(t *testing.T, in *policy.Input, d map[string]any, red []string) []string {
			in.ConsentWithdrawn = true
			return red
		}, "R16", ""},
	} {
		t.Run(l.name, func(t *testing.T) {
			m := cases[l.base]
			in, d := build(t, m)
			red := l.change(t, &in, d, m.redacted)
			vs := o.Check(in, true, d, red)
			if !has(vs, l.rule, l.path) {
				t.Errorf("no %s at %q:%s", l.rule, l.path, show(vs))
			}
		})
	}
}

// TestWithdrawalConsentReading: with the strict reading relaxed, a
// withdrawal may carry the §5 members of its consent, and no others.
func TestWithdrawalConsentReading(t *testing.T) {
	in := inputOf(t, referral)
	in.Message["type"] = "consent.withdrawal"
	in.Message["consent"] = map[string]any{"id": "C-1", "recipients": []any{"UN-UNICEF"}, "note": "x"}
	d := map[string]any{}
	for _, k := range []string{"id", "type", "from", "to", "purpose", "legal_basis", "iat", "exp"} {
		d[k] = in.Message[k]
	}
	d["subject"] = map[string]any{"ref": "S-0001"}
	d["consent"] = map[string]any{"id": "C-1", "recipients": []any{"UN-UNICEF"}}
	red := []string{"consent.note", "record", "subject.birth_date", "subject.birth_date_basis", "subject.location", "subject.names",
		"subject.nationality_claimed", "subject.relationships", "subject.sex"}
	if vs := newOracle(t).Check(in, true, d, red); !has(vs, "R10", "consent.recipients") || len(vs) != 1 {
		t.Errorf("strict:%s", show(vs))
	}
	if vs := newOracle(t, oracle.StrictWithdrawalConsent).Check(in, true, d, red); len(vs) > 0 {
		t.Errorf("relaxed:%s", show(vs))
	}
	_, got := newOracle(t).Minimise(in)
	if !slices.Contains(got, "consent.recipients") || !slices.Contains(got, "consent.note") || !slices.Contains(got, "record") {
		t.Errorf("Minimise removes %v", got)
	}
}
