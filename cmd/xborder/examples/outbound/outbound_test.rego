package xborder.outbound_test

import rego.v1

import data.xborder.outbound

_verify := {
	"type": "identity.verification.request", "purpose": "identity-verification",
	"subject": {"ref": "S-1"}, "record": {"requested_assertions": ["identity_match"]},
}

_evidence(record) := {"type": "referral", "purpose": "prosecution-evidence", "subject": {"ref": "S-1"}, "record": record, "consent": {"id": "C-1"}}

_referral(consent) := {"type": "referral", "purpose": "rehabilitation-referral", "subject": {"ref": "S-1"}, "record": {}, "consent": consent}

cases := [
	{"note": "verification from the case system", "caller": "case-system", "message": _verify, "rules": set()},
	{"note": "verification on a loopback edge", "caller": "local", "message": _verify, "rules": set()},
	{"note": "evidence with a case number", "caller": "prosecutor-desk", "message": _evidence({"case_number": "KZ-2026-00042"}), "rules": set()},
	{"note": "evidence without a case number", "caller": "prosecutor-desk", "message": _evidence({}), "rules": {"OUT1"}},
	{"note": "evidence with a malformed case number", "caller": "prosecutor-desk", "message": _evidence({"case_number": "42"}), "rules": {"OUT1"}},
	{"note": "referral with consent", "caller": "case-system", "message": _referral({"id": "C-7"}), "rules": set()},
	{"note": "referral without consent", "caller": "case-system", "message": _referral({}), "rules": {"OUT2"}},
	{"note": "referral with an empty consent id", "caller": "case-system", "message": _referral({"id": ""}), "rules": {"OUT2"}},
	{"note": "a system sending outside its purposes", "caller": "case-system", "message": _evidence({"case_number": "KZ-2026-00042"}), "rules": {"OUT3"}},
	{"note": "an unknown system", "caller": "someone", "message": _verify, "rules": {"OUT3"}},
]

test_decision[tc.note] if {
	some tc in cases
	d := outbound.decision with input as {"message": tc.message, "caller": tc.caller}
	d.allow == (count(tc.rules) == 0)
	{r.rule | some r in d.reasons} == tc.rules
}
