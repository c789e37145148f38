package xborder.response_test

import data.xborder.fixtures_test as fx
import data.xborder.response

_rules(set) := {r.rule | some r in set}

cases := [
	{"note": "answer to the accepted request", "input": fx.answer, "want": set()},
	{"note": "no accepted request (s12)", "input": json.remove(fx.answer, ["request"]), "want": {"R15"}},
	{"note": "request is null", "input": object.union(fx.answer, {"request": null}), "want": {"R15"}},
	{"note": "in_reply_to names another request", "input": object.union(fx.answer, {"message": {"in_reply_to": "other"}}), "want": {"R15"}},
	{"note": "in_reply_to missing", "input": json.remove(fx.answer, ["message/in_reply_to"]), "want": {"R15"}},
	{"note": "not back to the requester", "input": object.union(fx.answer, {"request": {"from": "UN-IOM"}}), "want": {"R15"}},
	{"note": "answered by another registry", "input": object.union(fx.answer, {"request": {"to": "IQ-MOI"}}), "want": {"R15"}},
	{"note": "purpose changed", "input": object.union(fx.answer, {"request": {"purpose": "border-screening"}}), "want": {"R15"}},
	{"note": "answers a referral", "input": object.union(fx.answer, {"request": {"type": "referral"}}), "want": {"R15"}},
	{"note": "outcome outside the list", "input": object.union(fx.answer, {"message": {"record": {"outcome": "probably"}}}), "want": {"R11"}},
	{"note": "no outcome", "input": json.remove(fx.answer, ["message/record/outcome"]), "want": {"R11"}},
	{"note": "no decided_by: no automated adverse decision", "input": json.remove(fx.answer, ["message/record/decided_by"]), "want": {"R11"}},
	{"note": "blank decided_by", "input": object.union(fx.answer, {"message": {"record": {"decided_by": "  "}}}), "want": {"R11"}},
	{"note": "a request is not a response", "input": fx.verification, "want": set()},
	{"note": "a referral.response needs a request too", "input": object.union(fx.referral, {"message": {"type": "referral.response"}}), "want": {"R15"}},
]

test_response[tc.note] if {
	some tc in cases
	_rules(response.deny) == tc.want with input as tc.input
}

_asked(list) := object.union(fx.answer, {"request": {"requested_assertions": list}})

unasked_cases := [
	{"note": "asked identity_match and nationality", "input": fx.answer, "unasked": {"document_valid"}},
	{"note": "document_valid was not asked", "input": _asked(["identity_match"]), "unasked": {"nationality_confirmed", "document_valid"}},
	{"note": "only nationality asked", "input": _asked(["nationality_confirmed"]), "unasked": {"fields_confirmed", "document_valid"}},
	{"note": "nothing asked", "input": _asked([]), "unasked": {"fields_confirmed", "nationality_confirmed", "document_valid"}},
	{"note": "no request: nothing answerable", "input": json.remove(fx.answer, ["request"]), "unasked": {"fields_confirmed", "nationality_confirmed", "document_valid"}},
]

test_unasked[tc.note] if {
	some tc in unasked_cases
	got := {f | some f in ["outcome", "decided_by", "fields_confirmed", "nationality_confirmed", "document_valid"]; response.unasked(f)} with input as tc.input
	got == tc.unasked
}
