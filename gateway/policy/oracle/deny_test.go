package oracle_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/oracle"
)

// TestMustDeny: each rule of DOMAIN.md §6 that denies, on the example it
// gives, and the nearest case it lets go.
func TestMustDeny(t *testing.T) {
	t.Parallel()
	o := newOracle(t)
	type change func(t *testing.T, in *policy.Input)
	subject := func(field string, v any) change {
		return func(t *testing.T, in *policy.Input) {
			drop(in.Message, "subject", "birth_date")
			if v != nil {
				put(in.Message, v, "subject", field)
			}
		}
	}
	consent := func(given, assent string) change {
		return func(t *testing.T, in *policy.Input) {
			put(in.Message, given, "consent", "given_by")
			if assent == "" {
				drop(in.Message, "consent", "child_assent")
			} else {
				put(in.Message, assent, "consent", "child_assent")
			}
		}
	}
	both := func(cs ...change) change {
		return func(t *testing.T, in *policy.Input) {
			for _, c := range cs {
				c(t, in)
			}
		}
	}
	to := func(id string) change {
		return func(t *testing.T, in *policy.Input) {
			in.Recipient = party(t, id)
			in.Message["to"] = id
		}
	}
	from := func(id string) change {
		return func(t *testing.T, in *policy.Input) {
			in.Sender = party(t, id)
			in.Message["from"] = id
		}
	}
	set := func(v any, names ...string) change {
		return func(t *testing.T, in *policy.Input) { put(in.Message, v, names...) }
	}
	unset := func(names ...string) change {
		return func(t *testing.T, in *policy.Input) { drop(in.Message, names...) }
	}
	for _, tc := range []struct {
		name   string
		msg    string
		change change
		deny   string // a rule that must deny, "" when nothing may
	}{
		{"s03 referral with representative consent and assent", referral, nil, ""},
		{"s01 verification request", verification, nil, ""},
		{"s08 prosecution evidence about an adult", evidence, nil, ""},
		{"screening of an adult", screening, nil, ""},

		{"R2 purpose outside the catalogue", referral, set("research", "purpose"), "R2"},
		{"R2 type not allowed for the purpose", referral, set("identity.verification.request", "type"), "R2"},
		{"R2 sender without a sender role", referral, from("KZ-GP"), "R2"},
		{"R2 recipient without a recipient role", referral, to("UN-OHCHR"), "R2"},

		{"R3 no agreement between the parties", referral, from("UZ-MFA"), ""}, // UZ-UN-PRR-2020 covers it
		{"R3 expired agreement TJ-UN-2020", referral, both(from("TJ-MFA")), "R3"},
		{"R3 agreement without the purpose", screening, to("KZ-GP"), "R3"},

		{"R4 birth date that is not a date", referral, set("unknown", "subject", "birth_date"), "R4"},
		{"R4 month 13", referral, set("2010-13-01", "subject", "birth_date"), "R4"},
		{"R4 30 February", referral, set("2010-02-30", "subject", "birth_date"), "R4"},
		{"R4 no zero padding", referral, set("2010-2-3", "subject", "birth_date"), "R4"},
		{"R4 a time with the date", referral, set("2010-02-03T00:00:00Z", "subject", "birth_date"), "R4"},
		{"R4 empty", referral, set("", "subject", "birth_date"), "R4"},
		{"R4 a number", referral, set(json.Number("2010"), "subject", "birth_date"), "R4"},
		{"R4 leading space", referral, set(" 2010", "subject", "birth_date"), "R4"},
		{"R4 null", referral, set(nil, "subject", "birth_date"), "R4"},
		{"R4 29 February of a common year", referral, set("2009-02-29", "subject", "birth_date"), "R4"},
		{"R4 negative estimate", referral, subject("age_estimate", json.Number("-1")), "R4"},
		{"R4 estimate as a string", referral, subject("age_estimate", "8"), "R4"},
		{"R4 a partial year is a date", referral, set("2018", "subject", "birth_date"), ""},
		{"R4 a partial month is a date", referral, set("2018-04", "subject", "birth_date"), ""},
		{"R4 29 February of a leap year", referral, set("2016-02-29", "subject", "birth_date"), ""},
		{"R4 fractional estimate", referral, subject("age_estimate", json.Number("8.5")), ""},

		{"R6 screening of a child", screening, set("2010-01-01", "subject", "birth_date"), "R6"},
		{"R6 screening with no age known", screening, unset("subject", "birth_date"), "R6"},
		{"R6 screening of one who turns 18 tomorrow", screening, set("2008-06-02", "subject", "birth_date"), "R6"},
		{"R6 screening of one who turns 18 today", screening, set("2008-06-01", "subject", "birth_date"), ""},
		{"R6 partial year counts at 31 December", screening, set("2008", "subject", "birth_date"), "R6"},
		{"R6 partial year 2007 is an adult", screening, set("2007", "subject", "birth_date"), ""},
		{"R6 partial month counts at its last day", screening, set("2008-06", "subject", "birth_date"), "R6"},
		{"R6 partial month before is an adult", screening, set("2008-05", "subject", "birth_date"), ""},
		{"R6 estimate under 18", screening, subject("age_estimate", json.Number("17.9")), "R6"},
		{"R6 estimate 18", screening, subject("age_estimate", json.Number("18")), ""},

		{"R7 conduct at 13", evidence, both(set("2002-07-03", "subject", "birth_date"), set("2016-03-01", "record", "offence_date")), "R7"},
		{"R7 conduct at 14 about an adult", evidence, both(set("2001-07-03", "subject", "birth_date"), set("2016-03-01", "record", "offence_date")), "R7"}, // strict child-at-conduct
		{"R7 a 16-year-old to the prosecutor", evidence, both(set("2010-03-01", "subject", "birth_date"), set("2026-05-01", "record", "offence_date")), "R7"},
		{"R7 a 16-year-old to child justice", evidence, both(set("2010-03-01", "subject", "birth_date"), set("2026-05-01", "record", "offence_date"), to("KZ-JC")), ""},
		{"R7 estimate 15 now, conduct 18 months ago", evidence, both(subject("age_estimate", json.Number("15")), set("2024-12-01", "record", "offence_date"), to("KZ-JC")), "R7"},
		{"R7 estimate 16 now, conduct 18 months ago", evidence, both(subject("age_estimate", json.Number("16")), set("2024-12-01", "record", "offence_date"), to("KZ-JC")), ""},
		{"R7 a 13-year-old at the decision without offence_date", evidence, both(set("2013-01-01", "subject", "birth_date"), unset("record", "offence_date"), to("KZ-JC")), "R7"},

		{"R9 no consent", referral, unset("consent"), "R9"},
		{"R9 expired consent", referral, set("2026-05-01T00:00:00Z", "consent", "expires_at"), "R9"},
		{"R9 consent expiring at the decision", referral, set(now, "consent", "expires_at"), "R9"},
		{"R9 consent not naming the recipient", referral, set([]any{"UN-IOM"}, "consent", "recipients"), "R9"},
		{"R9 recipients as a string", referral, set("UN-UNICEF", "consent", "recipients"), "R9"},
		{"R9 consent not naming the purpose", referral, set([]any{"family-tracing"}, "consent", "purposes"), "R9"},
		{"R9 unknown basis", referral, set("implied", "consent", "basis"), "R9"},
		{"R9 no basis: read as a consent, assent still needed", referral, both(unset("consent", "basis"), consent("representative", "no")), "R9"},
		{"R5 an adult consents for themself", referral, both(set("1990-01-01", "subject", "birth_date"), consent("subject", "n/a")), ""},
		{"R5 age 8: representative without assent", referral, consent("representative", "no"), "R9"},
		{"R5 age 8: the child alone", referral, consent("subject", "n/a"), "R9"},
		{"R5 age 5: representative, no assent needed", referral, both(set("2021-01-01", "subject", "birth_date"), consent("representative", "n/a")), ""},
		{"R5 age 6: assent needed", referral, both(set("2020-01-01", "subject", "birth_date"), consent("representative", "")), "R9"},
		{"R5 age 12: the child alone", referral, both(set("2014-01-01", "subject", "birth_date"), consent("subject", "n/a")), "R9"},
		{"R5 age 13: the child consents", referral, both(set("2013-01-01", "subject", "birth_date"), consent("subject", "n/a")), ""},
		{"R5 age 14: representative and assent", referral, both(set("2012-01-01", "subject", "birth_date"), consent("representative", "yes")), ""},
		{"R5 age 14: representative, no assent", referral, both(set("2012-01-01", "subject", "birth_date"), consent("representative", "no")), "R9"},
		{"R5 age 15: a representative is not enough", referral, both(set("2011-01-01", "subject", "birth_date"), consent("representative", "yes")), "R9"},
		{"R5 age 16: the child consents", referral, both(set("2010-01-01", "subject", "birth_date"), consent("subject", "n/a")), ""},
		{"R5 estimate 12.9 reads as 12", referral, both(subject("age_estimate", json.Number("12.9")), consent("subject", "n/a")), "R9"},
		{"R5 unknown age: representative and assent", referral, subject("", nil), ""},
		{"R5 unknown age: the subject alone", referral, both(subject("", nil), consent("subject", "n/a")), "R9"},
		{"R5 unknown age: representative without assent", referral, both(subject("", nil), consent("representative", "n/a")), "R9"},
		{"R5 no given_by", referral, unset("consent", "given_by"), "R9"},
		{"R9 override approved by child protection", referral, both(set("best_interests_override", "consent", "basis"),
			set(map[string]any{"approved_by_role": "child-protection", "reason": "no caregiver", "bia_ref": "BIA-1"}, "consent", "override")), ""},
		{"R9 override without bia_ref", referral, both(set("best_interests_override", "consent", "basis"),
			set(map[string]any{"approved_by_role": "child-protection", "reason": "no caregiver"}, "consent", "override")), "R9"},
		{"R9 override approved by social services", referral, both(set("best_interests_override", "consent", "basis"),
			set(map[string]any{"approved_by_role": "social-services", "bia_ref": "BIA-1"}, "consent", "override")), "R9"},

		{"R1 no decision time", referral, func(t *testing.T, in *policy.Input) { in.Now = "1 June 2026" }, "R1"},
		{"R14 suspended sender", referral, func(t *testing.T, in *policy.Input) { in.Sender.Suspended = true }, "R14"},
		{"R14 suspended recipient", referral, func(t *testing.T, in *policy.Input) { in.Recipient.Suspended = true }, "R14"},
		{"R16 withdrawn consent", referral, func(t *testing.T, in *policy.Input) { in.ConsentWithdrawn = true }, "R16"},

		{"R15 answer to the request", answer, func(t *testing.T, in *policy.Input) { in.Request = answerRequest() }, ""},
		{"R15 answer without a request", answer, nil, "R15"},
		{"R15 answer to a request of another purpose", answer, func(t *testing.T, in *policy.Input) {
			in.Request = answerRequest()
			in.Request.Purpose = "border-screening"
		}, "R15"},
		{"R15 answer to someone else", answer, func(t *testing.T, in *policy.Input) {
			in.Request = answerRequest()
			in.Request.From = "UN-IOM"
		}, "R15"},
		{"R15 in_reply_to names another request", answer, func(t *testing.T, in *policy.Input) {
			in.Request = answerRequest()
			in.Message["in_reply_to"] = "3f1c2a90-0000-4000-8000-00000000ffff"
		}, "R15"},

		{"PROTOCOL §2 a dotted member", referral, set("trauma", "record", "psychosocial.assessment"), "PROTOCOL-2"},
		{"PROTOCOL §2 a Cyrillic letter", referral, set("x", "consent", "purpos\u0435s"), "PROTOCOL-2"},
		{"PROTOCOL §2 65 characters", referral, set("x", "subject", "names", strings.Repeat("n", 65)), "PROTOCOL-2"},
		{"PROTOCOL §2 64 characters pass", referral, set("x", "subject", "names", strings.Repeat("n", 64)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := inputOf(t, tc.msg)
			if tc.change != nil {
				tc.change(t, &in)
			}
			vs := o.MustDeny(in)
			switch {
			case tc.deny == "" && len(vs) > 0:
				t.Errorf("denied:%s", show(vs))
			case tc.deny != "" && !has(vs, tc.deny, ""):
				t.Errorf("not denied by %s:%s", tc.deny, show(vs))
			}
			// A denial the rules ask is a violation when the gateway allows,
			// and none when it denies and delivers nothing.
			if got := o.Check(in, false, nil, nil); len(got) > 0 {
				t.Errorf("a denial without delivery judged wrong:%s", show(got))
			}
			if tc.deny != "" && !has(o.Check(in, true, nil, nil), tc.deny, "") {
				t.Errorf("allowing it is not a %s violation", tc.deny)
			}
		})
	}
}

// TestStrictChecksCanBeRelaxed: each reading DOMAIN.md leaves open can be
// switched off by name.
func TestStrictChecksCanBeRelaxed(t *testing.T) {
	t.Parallel()
	type tc struct {
		strict string
		msg    string
		change func(t *testing.T, in *policy.Input)
	}
	for _, c := range []tc{
		{oracle.StrictResponseAge, answer, func(t *testing.T, in *policy.Input) {
			in.Message["purpose"] = "border-screening"
			in.Sender, in.Recipient = party(t, "UZ-MVD"), party(t, "KZ-MVD")
			in.Message["from"], in.Message["to"] = "UZ-MVD", "KZ-MVD"
			drop(in.Message, "subject", "birth_date")
			in.Request = answerRequest()
			in.Request.From, in.Request.To, in.Request.Purpose = "KZ-MVD", "UZ-MVD", "border-screening"
		}},
		{oracle.StrictChildAtConduct, evidence, func(t *testing.T, in *policy.Input) {
			put(in.Message, "2000-01-01", "subject", "birth_date")
		}},
		{oracle.StrictUnknownAgeProsecution, evidence, func(t *testing.T, in *policy.Input) {
			drop(in.Message, "subject", "birth_date")
			in.Recipient, in.Message["to"] = party(t, "KZ-JC"), "KZ-JC"
		}},
		{oracle.StrictOffenceDate, evidence, func(t *testing.T, in *policy.Input) {
			put(in.Message, "2016-03", "record", "offence_date")
		}},
		{oracle.StrictEstimateBesideDate, referral, func(t *testing.T, in *policy.Input) {
			put(in.Message, "eight", "subject", "age_estimate")
		}},
		{oracle.StrictAdultConsent, referral, func(t *testing.T, in *policy.Input) {
			put(in.Message, "1990-01-01", "subject", "birth_date")
		}},
		{oracle.StrictConsentBasis, referral, func(t *testing.T, in *policy.Input) {
			drop(in.Message, "consent", "basis")
		}},
		{oracle.StrictConsentExpiry, referral, func(t *testing.T, in *policy.Input) {
			drop(in.Message, "consent", "expires_at")
		}},
		{oracle.StrictOverrideScope, referral, func(t *testing.T, in *policy.Input) {
			put(in.Message, "best_interests_override", "consent", "basis")
			put(in.Message, map[string]any{"approved_by_role": "child-protection", "bia_ref": "BIA-1"}, "consent", "override")
			put(in.Message, []any{"UN-IOM"}, "consent", "recipients")
		}},
		{oracle.StrictInReplyTo, referral, func(t *testing.T, in *policy.Input) {
			in.Message["in_reply_to"] = "3f1c2a90-0000-4000-8000-000000000002"
		}},
		{oracle.StrictParties, referral, func(t *testing.T, in *policy.Input) {
			in.Message["from"] = "KZ-MFA"
		}},
		{oracle.StrictWithdrawalAgreement, referral, func(t *testing.T, in *policy.Input) {
			in.Message["type"] = "consent.withdrawal"
			in.Message["consent"] = map[string]any{"id": "C-2026-001"}
			in.Sender, in.Message["from"] = party(t, "TJ-MFA"), "TJ-MFA"
		}},
	} {
		t.Run(c.strict, func(t *testing.T) {
			in := inputOf(t, c.msg)
			c.change(t, &in)
			vs := newOracle(t).MustDeny(in)
			if !slices.ContainsFunc(vs, func(v oracle.Violation) bool { return v.Strict == c.strict }) {
				t.Fatalf("no %s violation:%s", c.strict, show(vs))
			}
			for _, v := range newOracle(t, c.strict).MustDeny(in) {
				if v.Strict == c.strict {
					t.Errorf("relaxed, still: %s", v)
				}
			}
		})
	}
	if got := len(oracle.StrictChecks()); got != 14 {
		t.Errorf("%d strict checks listed", got)
	}
}
