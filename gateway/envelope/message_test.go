package envelope_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/envelope"
)

func TestParseMessage(t *testing.T) {
	t0 := now.Unix()
	set := func(kv ...any) func(m map[string]any) {
		return func(m map[string]any) {
			for i := 0; i < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
		}
	}
	del := func(keys ...string) func(m map[string]any) {
		return func(m map[string]any) {
			for _, k := range keys {
				delete(m, k)
			}
		}
	}
	window := func(iat, exp int64) func(m map[string]any) { return set("iat", iat, "exp", exp) }

	cases := []struct {
		name    string
		profile envelope.Profile
		edit    func(m map[string]any)
		detail  string // "" = valid
	}{
		{"valid", envelope.Profile{}, func(map[string]any) {}, ""},
		{"unknown top-level field", envelope.Profile{}, set("birth_date", "2018-04-12"), "an unlisted field"},
		{"unknown top-level fields never named", envelope.Profile{}, set("zz", 1, "aa", 2), "an unlisted field"},
		{"unknown fields inside subject, record, consent kept", envelope.Profile{},
			set("subject", map[string]any{"ref": "S-1", "new": true}, "record", map[string]any{"new": 1}, "consent", map[string]any{"new": "x"}), ""},

		{"id missing", envelope.Profile{}, del("id"), "id"},
		{"id not a string", envelope.Profile{}, set("id", 12), "id"},
		{"id not a uuid", envelope.Profile{}, set("id", "msg-1"), "id"},
		{"id uuid in braces", envelope.Profile{}, set("id", "{"+msgID+"}"), "id"},
		{"id urn form", envelope.Profile{}, set("id", "urn:uuid:"+msgID), "id"},
		{"id without dashes", envelope.Profile{}, set("id", strings.ReplaceAll(msgID, "-", "")), "id"},
		{"id with a non-hex digit", envelope.Profile{}, set("id", "3f1c2a90-0000-4000-8000-00000000000g"), "id"},
		{"id upper case accepted", envelope.Profile{}, set("id", strings.ToUpper(msgID)), ""},

		{"type missing", envelope.Profile{}, del("type"), "type"},
		{"type empty", envelope.Profile{}, set("type", ""), "type"},
		{"type upper case", envelope.Profile{}, set("type", "Referral"), "type"},
		{"type leading dot", envelope.Profile{}, set("type", ".referral"), "type"},
		{"type trailing dot", envelope.Profile{}, set("type", "referral."), "type"},
		{"type double dot", envelope.Profile{}, set("type", "identity..request"), "type"},
		{"type with dash", envelope.Profile{}, set("type", "referral-response"), "type"},
		{"type not a string", envelope.Profile{}, set("type", []any{"referral"}), "type"},
		{"type one word", envelope.Profile{}, set("type", "referral"), ""},

		{"from missing", envelope.Profile{}, del("from"), "from"},
		{"from lower case", envelope.Profile{}, set("from", "un-unicef"), "from"},
		{"from three-letter country", envelope.Profile{}, set("from", "KAZ-MJ"), "from"},
		{"from agency too short", envelope.Profile{}, set("from", "KZ-M"), "from"},
		{"from agency 20 chars", envelope.Profile{}, set("from", "KZ-"+strings.Repeat("A", 20)), ""},
		{"from agency 21 chars", envelope.Profile{}, set("from", "KZ-"+strings.Repeat("A", 21)), "from"},
		{"from digit in country", envelope.Profile{}, set("from", "K1-MJ"), "from"},
		{"from no dash", envelope.Profile{}, set("from", "KZMJ1"), "from"},
		{"to missing", envelope.Profile{}, del("to"), "to"},
		{"to with dash in agency", envelope.Profile{}, set("to", "KZ-M-J"), "to"},

		{"purpose missing", envelope.Profile{}, del("purpose"), "purpose"},
		{"purpose one char", envelope.Profile{}, set("purpose", "a"), "purpose"},
		{"purpose two chars", envelope.Profile{}, set("purpose", "ab"), ""},
		{"purpose 64 chars", envelope.Profile{}, set("purpose", strings.Repeat("a", 64)), ""},
		{"purpose 65 chars", envelope.Profile{}, set("purpose", strings.Repeat("a", 65)), "purpose"},
		{"purpose leading dash", envelope.Profile{}, set("purpose", "-screening"), "purpose"},
		{"purpose upper case", envelope.Profile{}, set("purpose", "Family-tracing"), "purpose"},
		{"purpose underscore", envelope.Profile{}, set("purpose", "family_tracing"), "purpose"},

		{"legal_basis missing", envelope.Profile{}, del("legal_basis"), "legal_basis"},
		{"legal_basis empty", envelope.Profile{}, set("legal_basis", ""), "legal_basis"},
		{"legal_basis blank", envelope.Profile{}, set("legal_basis", " \t"), "legal_basis"},
		{"legal_basis not a string", envelope.Profile{}, set("legal_basis", true), "legal_basis"},

		{"iat missing", envelope.Profile{}, del("iat"), "iat"},
		{"iat string", envelope.Profile{}, set("iat", "1795348790"), "iat"},
		{"iat fraction (RFC 7519 NumericDate)", envelope.Profile{}, set("iat", json.Number(fmt.Sprint(t0-10)+".5")), ""},
		{"iat zero fraction", envelope.Profile{}, set("iat", json.Number(fmt.Sprint(t0-10)+".0")), ""},
		{"iat exponent", envelope.Profile{}, set("iat", json.Number(fmt.Sprintf("%de0", t0-10))), ""},
		{"iat fraction at now+300.5", envelope.Profile{}, set("iat", json.Number(fmt.Sprint(t0+300)+".5"), "exp", t0+600), "not_yet_valid"},
		{"iat fraction at now-300.5", envelope.Profile{}, set("iat", json.Number(fmt.Sprint(t0-301)+".5"), "exp", t0+100), "expired"},
		{"iat infinity by exponent", envelope.Profile{}, set("iat", json.Number("1e999")), "iat"},
		{"iat negative", envelope.Profile{}, set("iat", -1), "iat"},
		{"iat overflows int64", envelope.Profile{}, set("iat", json.Number("99999999999999999999")), "iat"},
		{"exp missing", envelope.Profile{}, del("exp"), "exp"},
		{"exp null", envelope.Profile{}, set("exp", nil), "exp"},
		{"exp fraction", envelope.Profile{}, set("exp", json.Number(fmt.Sprint(t0+100)+".25")), ""},
		{"exp fraction just past now", envelope.Profile{}, set("iat", t0-100, "exp", json.Number(fmt.Sprint(t0)+".0")), "expired"},
		{"exp fraction beyond lifetime", envelope.Profile{}, set("iat", t0-10, "exp", json.Number(fmt.Sprint(t0-10+3600)+".001")), "exp"},

		{"exp equal to iat", envelope.Profile{}, window(t0, t0), "exp"},
		{"exp before iat", envelope.Profile{}, window(t0, t0-1), "exp"},
		{"lifetime 3600", envelope.Profile{}, window(t0-10, t0-10+3600), ""},
		{"lifetime 3601", envelope.Profile{}, window(t0-10, t0-10+3601), "exp"},
		{"lifetime 60 with MaxLifetime 60s", envelope.Profile{MaxLifetime: time.Minute}, window(t0, t0+60), ""},
		{"lifetime 61 with MaxLifetime 60s", envelope.Profile{MaxLifetime: time.Minute}, window(t0, t0+61), "exp"},
		{"iat now+300", envelope.Profile{}, window(t0+300, t0+600), ""},
		{"iat now+301", envelope.Profile{}, window(t0+301, t0+600), "not_yet_valid"},
		{"iat now+10 with skew 10s", envelope.Profile{ClockSkew: 10 * time.Second}, window(t0+10, t0+600), ""},
		{"iat now+11 with skew 10s", envelope.Profile{ClockSkew: 10 * time.Second}, window(t0+11, t0+600), "not_yet_valid"},
		{"exp now+1", envelope.Profile{}, window(t0-100, t0+1), ""},
		{"exp now", envelope.Profile{}, window(t0-100, t0), "expired"},
		{"exp now-1", envelope.Profile{}, window(t0-100, t0-1), "expired"},
		{"iat long ago, exp ahead", envelope.Profile{}, window(t0-3500, t0+100), "expired"},
		{"iat at now-300", envelope.Profile{}, window(t0-300, t0+100), ""},
		{"iat at now-301", envelope.Profile{}, window(t0-301, t0+100), "expired"},
		{"iat long ago, time check deferred", envelope.Profile{DeferTimeCheck: true}, window(t0-3500, t0+100), ""},
		{"expired, time check deferred", envelope.Profile{DeferTimeCheck: true}, window(t0-100, t0-1), ""},

		{"in_reply_to on a request", envelope.Profile{}, set("in_reply_to", reqID), ""},
		{"in_reply_to not a uuid", envelope.Profile{}, set("in_reply_to", "req-1"), "in_reply_to"},
		{"in_reply_to null", envelope.Profile{}, set("in_reply_to", nil), "in_reply_to"},
		{"response without in_reply_to", envelope.Profile{}, set("type", "identity.verification.response"), "in_reply_to"},
		{"referral.response without in_reply_to", envelope.Profile{}, set("type", "referral.response"), "in_reply_to"},
		{"response with in_reply_to", envelope.Profile{}, set("type", "referral.response", "in_reply_to", reqID), ""},

		{"subject missing", envelope.Profile{}, del("subject"), "subject"},
		{"subject not an object", envelope.Profile{}, set("subject", "S-0001"), "subject"},
		{"subject null", envelope.Profile{}, set("subject", nil), "subject"},
		{"subject.ref missing", envelope.Profile{}, set("subject", map[string]any{"sex": "F"}), "subject.ref"},
		{"subject.ref empty", envelope.Profile{}, set("subject", map[string]any{"ref": ""}), "subject.ref"},
		{"subject.ref not a string", envelope.Profile{}, set("subject", map[string]any{"ref": 7}), "subject.ref"},
		{"consent.withdrawal without subject", envelope.Profile{}, func(m map[string]any) {
			delete(m, "subject")
			delete(m, "record")
			m["type"] = "consent.withdrawal"
			m["consent"] = map[string]any{"id": "C-1"}
		}, ""},
		{"consent.withdrawal with subject lacking ref", envelope.Profile{},
			set("type", "consent.withdrawal", "subject", map[string]any{}), "subject.ref"},

		{"to equals from", envelope.Profile{}, func(m map[string]any) { m["to"] = m["from"] }, "to"},

		// PROTOCOL §2: member names inside subject, record and consent.
		{"dotted name in record", envelope.Profile{}, set("record", map[string]any{"psychosocial.assessment": "x"}), "record: " + envelope.DetailMemberName},
		{"dotted name deep in subject", envelope.Profile{}, set("subject", map[string]any{"ref": "S-1", "biometrics": map[string]any{"template.ref": "x"}}), "subject: " + envelope.DetailMemberName},
		{"dotted name in an array element", envelope.Profile{}, set("subject", map[string]any{"ref": "S-1", "documents": []any{map[string]any{"a": []any{map[string]any{"b.c": 1}}}}}), "subject: " + envelope.DetailMemberName},
		{"dotted name in consent", envelope.Profile{}, set("consent", map[string]any{"id": "C-1", "override.reason": "x"}), "consent: " + envelope.DetailMemberName},
		{"space in a name", envelope.Profile{}, set("record", map[string]any{"notes ": "x"}), "record: " + envelope.DetailMemberName},
		{"empty name", envelope.Profile{}, set("record", map[string]any{"": "x"}), "record: " + envelope.DetailMemberName},
		{"65-byte name", envelope.Profile{}, set("record", map[string]any{strings.Repeat("a", 65): "x"}), "record: " + envelope.DetailMemberName},
		{"64-byte name", envelope.Profile{}, set("record", map[string]any{strings.Repeat("a", 64): "x"}), ""},
		{"lookalike (Cyrillic a) name", envelope.Profile{}, set("record", map[string]any{"psychosoci\u0430l": "x"}), "record: " + envelope.DetailMemberName},
		{"NUL in a name", envelope.Profile{}, set("consent", map[string]any{"id\u0000": "x"}), "consent: " + envelope.DetailMemberName},
		{"zero-width in a name", envelope.Profile{}, set("subject", map[string]any{"ref": "S-1", "na\u200bmes": "x"}), "subject: " + envelope.DetailMemberName},
		{"dash, underscore, digits, capitals", envelope.Profile{}, set("record", map[string]any{"Needs_2-b": "x"}), ""},
		{"dots in values are fine", envelope.Profile{}, set("record", map[string]any{"notes": "a.b.c"}), ""},

		{"record absent", envelope.Profile{}, del("record"), ""},
		{"record not an object", envelope.Profile{}, set("record", []any{}), "record"},
		{"consent not an object", envelope.Profile{}, set("consent", "yes"), "consent"},
		{"consent null", envelope.Profile{}, set("consent", nil), "consent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := message()
			tc.edit(m)
			msg, err := envelope.ParseMessage(mustJSON(t, m), now, tc.profile)
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("ParseMessage: %v", err)
				}
				if msg.Raw == nil || msg.ID != strings.ToLower(m["id"].(string)) {
					t.Errorf("message %+v", msg)
				}
				return
			}
			var e *envelope.Error
			if !asError(err, &e) {
				t.Fatalf("err = %v, want invalid_message (%s)", err, tc.detail)
			}
			if e.Code != envelope.CodeInvalidMessage || e.Detail != tc.detail {
				t.Errorf("got %s (%s), want invalid_message (%s)", e.Code, e.Detail, tc.detail)
			}
		})
	}
}

// Details and error texts never carry a field's value.
func TestParseMessageErrorsLeakNothing(t *testing.T) {
	secret := "ABENOVA-AIGERIM-2018"
	for _, k := range []string{"id", "type", "from", "to", "purpose", "in_reply_to", "iat", "subject", "secret_field"} {
		m := message()
		m[k] = secret
		_, err := envelope.ParseMessage(mustJSON(t, m), now, envelope.Profile{})
		if err == nil {
			t.Fatalf("%s: accepted", k)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error %q leaks the value", k, err)
		}
	}
	// A JSON error inside a string does not quote it either.
	_, err := envelope.ParseMessage([]byte(`{"subject":{"ref":"`+secret+"\x01"+`"}}`), now, envelope.Profile{})
	if envelope.CodeOf(err) != envelope.CodeMalformedEnvelope || strings.Contains(err.Error(), secret) {
		t.Errorf("err = %v", err)
	}
}

func TestParseMessageDepth(t *testing.T) {
	tests := []struct {
		name    string
		depth   int // nesting below record, whose own level is 2
		profile envelope.Profile
		code    envelope.Code
	}{
		{"depth 32", 30, envelope.Profile{}, ""},
		{"depth 33", 31, envelope.Profile{}, envelope.CodeMalformedEnvelope},
		{"depth 8 with MaxDepth 8", 6, envelope.Profile{MaxDepth: 8}, ""},
		{"depth 9 with MaxDepth 8", 7, envelope.Profile{MaxDepth: 8}, envelope.CodeMalformedEnvelope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := message()
			m["record"] = map[string]any{"x": nest(tc.depth)}
			_, err := envelope.ParseMessage(mustJSON(t, m), now, tc.profile)
			if got := envelope.CodeOf(err); got != tc.code {
				t.Fatalf("code %q, want %q (%v)", got, tc.code, err)
			}
		})
	}
}

func asError(err error, target **envelope.Error) bool {
	e, ok := err.(*envelope.Error)
	if ok {
		*target = e
	}
	return ok
}
