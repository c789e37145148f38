package xborder.decision_test

import data.xborder
import data.xborder.fixtures_test as fx

_decide(inp) := d if {
	d := xborder.decision with input as inp
}

_rules(d) := [r.rule | some r in d.reasons]

test_shape_of_an_allowed_decision if {
	d := _decide(object.union(fx.referral, {"message": {"record": {"allegations": {}}}}))
	d.allow == true
	d.redact == ["record.allegations"]
	_rules(d) == ["R10"]
	d.obligations == {"retention_days": 400, "review": false}
}

test_denying_rules_come_first if {
	d := _decide(object.union(fx.referral, {"recipient": {"suspended": true}, "message": {"record": {"allegations": {}}}}))
	d.allow == false
	_rules(d) == ["R14", "R10"]
}

test_denials_in_rule_order if {
	d := _decide(object.union(fx.referral, {"consent_withdrawn": true, "recipient": {"suspended": true}, "message": {"consent": {"expires_at": "2020-01-01T00:00:00Z"}}}))
	_rules(d) == ["R9", "R14", "R16"]
}

retention_cases := [
	{"note": "identity-verification", "input": fx.verification, "days": 90},
	{"note": "rehabilitation-referral", "input": fx.referral, "days": 400},
	{"note": "prosecution-evidence", "input": fx.prosecution, "days": 1825},
	{"note": "border-screening", "input": fx.screening, "days": 30},
	{"note": "unknown purpose", "input": object.union(fx.referral, {"message": {"purpose": "other"}}), "days": 0},
]

test_retention[tc.note] if {
	some tc in retention_cases
	_decide(tc.input).obligations.retention_days == tc.days
}

test_retention_is_data if {
	_decide(fx.referral).obligations.retention_days == 30 with data.xborder_data.retention_days["rehabilitation-referral"] as 30
}

allowed_fixtures := {
	"referral": fx.referral,
	"verification": fx.verification,
	"answer": fx.answer,
	"screening": fx.screening,
	"prosecution": fx.prosecution,
}

test_fixtures_are_allowed[name] if {
	some name, inp in allowed_fixtures
	_decide(inp).allow == true
}

r1_cases := [
	{"note": "empty input", "input": {}},
	{"note": "now is not a time", "input": object.union(fx.referral, {"now": "today"})},
	{"note": "no now", "input": json.remove(fx.referral, ["now"])},
	{"note": "message is not an object", "input": object.union(fx.referral, {"message": "text"})},
	{"note": "message from another participant", "input": object.union(fx.referral, {"message": {"from": "KZ-MFA"}})},
]

test_default_deny[tc.note] if {
	some tc in r1_cases
	d := _decide(tc.input)
	d.allow == false
	"R1" in _rules(d)
	is_number(d.obligations.retention_days)
	d.obligations.review == false
}

test_redact_is_sorted_and_unique if {
	d := _decide(object.union(fx.referral, {"message": {"subject": {"zz": 1, "aa": 2, "biometrics": {}}, "record": {"allegations": {}}}}))
	d.redact == ["record.allegations", "subject.aa", "subject.biometrics", "subject.zz"]

	# the two unlisted fields share one sentence, which names neither
	count(d.reasons) == 3
}

test_override_marked_for_review if {
	inp := json.patch(fx.referral, [{"op": "replace", "path": "/message/consent", "value": {
		"id": "C-OVR",
		"basis": "best_interests_override",
		"override": {"approved_by_role": "child-protection", "reason": "test", "bia_ref": "BIA-1"},
	}}])
	d := _decide(inp)
	d.allow == true
	d.obligations.review == true
}

test_no_personal_data_in_reasons if {
	d := _decide(object.union(fx.referral, {"recipient": {"suspended": true}, "message": {"consent": {"expires_at": "2020-01-01T00:00:00Z"}, "record": {"allegations": {}}}}))
	every r in d.reasons {
		not contains(r.message, "TEST")
		not contains(r.message, "2018")
		not contains(r.message, "S-0001")
	}
}
