package xborder.parties_test

import data.xborder.fixtures_test as fx
import data.xborder.parties

_rules(set) := {r.rule | some r in set}

cases := [
	{"note": "both active", "input": fx.referral, "want": set()},
	{"note": "suspended recipient (s13)", "input": object.union(fx.referral, {"recipient": {"suspended": true}}), "want": {"R14"}},
	{"note": "suspended sender", "input": object.union(fx.referral, {"sender": {"suspended": true}}), "want": {"R14"}},
	{"note": "from is not the sender", "input": object.union(fx.referral, {"message": {"from": "KZ-MFA"}}), "want": {"R1"}},
	{"note": "to is not the recipient", "input": object.union(fx.referral, {"message": {"to": "UN-IOM"}}), "want": {"R1"}},
	{"note": "no from", "input": json.remove(fx.referral, ["message/from"]), "want": {"R1"}},
]

test_parties[tc.note] if {
	some tc in cases
	_rules(parties.deny) == tc.want with input as tc.input
}

test_both_suspended_gives_two_reasons if {
	count(parties.deny) == 2 with input as object.union(fx.referral, {"sender": {"suspended": true}, "recipient": {"suspended": true}})
}
