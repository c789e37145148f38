package xborder.agreement_test

import data.xborder.agreement
import data.xborder.fixtures_test as fx

_at(now, m) := object.union(m, {"now": now})

_tj := object.union(fx.referral, {
	"sender": fx.tjmfa,
	"message": {"from": "TJ-MFA"},
})

_withdrawal(base) := object.union(json.remove(base, ["message/record"]), {"message": {
	"type": "consent.withdrawal",
	"subject": {"ref": "S-0001"},
}})

cases := [
	{"note": "KZ-UN-PRR-2019 covers social services to UNICEF", "input": fx.referral, "covered": true},
	{"note": "on the agreement's first day", "input": _at("2019-01-01T00:00:00Z", fx.referral), "covered": true},
	{"note": "the day before it starts", "input": _at("2018-12-31T23:59:59Z", fx.referral), "covered": false},
	{"note": "TJ-UN-2020 on its last day", "input": _at("2025-12-31T23:59:59Z", _tj), "covered": true},
	{"note": "TJ-UN-2020 the day after it ends", "input": _at("2026-01-01T00:00:00Z", _tj), "covered": false},
	{"note": "TJ-UN-2020 expired (s14)", "input": _tj, "covered": false},
	{"note": "a withdrawal still reaches a party after expiry", "input": _withdrawal(_tj), "covered": true},
	{"note": "a withdrawal needs a started agreement", "input": _at("2019-06-01T00:00:00Z", _withdrawal(_tj)), "covered": false},
	{"note": "purpose outside the agreement", "input": object.union(fx.referral, {"message": {"purpose": "prosecution-evidence"}}), "covered": false},
	{"note": "recipient not a party", "input": object.union(fx.referral, {"recipient": {"id": "UZ-MFA"}}), "covered": false},
	{"note": "parties of two different agreements", "input": object.union(fx.referral, {"recipient": fx.gp, "message": {"to": "KZ-GP"}}), "covered": false},
	{"note": "CA-BORDER-2021 covers screening", "input": fx.screening, "covered": true},
	{"note": "CA-BORDER-2021 before 2021", "input": _at("2020-12-31T12:00:00Z", fx.screening), "covered": false},
	{"note": "no valid now", "input": _at("now", fx.referral), "covered": false},
]

test_covered[tc.note] if {
	some tc in cases
	tc.covered == _covered with input as tc.input
	_want_deny(tc.covered) == {r.rule | some r in agreement.deny} with input as tc.input
}

_covered if {
	agreement.covered
} else := false

_want_deny(true) := set()

_want_deny(false) := {"R3"}

test_agreements_are_data if {
	not agreement.covered with input as _tj
	agreement.covered with input as _tj with data.xborder_data.agreements as [{
		"id": "TJ-UN-2026",
		"parties": ["TJ-MFA", "UN-UNICEF"],
		"purposes": ["rehabilitation-referral"],
		"valid_from": "2026-01-01",
		"valid_until": "2026-12-31",
	}]
}

test_invalid_agreement_dates_cover_nothing if {
	not agreement.covered with input as fx.referral with data.xborder_data.agreements as [{
		"id": "BROKEN",
		"parties": ["KZ-MTSZN", "UN-UNICEF"],
		"purposes": ["rehabilitation-referral"],
		"valid_from": "2019-01-01",
		"valid_until": "2030-02-30",
	}]
}
