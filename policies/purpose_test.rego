package xborder.purpose_test

import data.xborder.fixtures_test as fx
import data.xborder.purpose

# R2: every purpose of the catalogue, with a sender and recipient that may
# use it and ones that may not.
role_cases := [
	{"note": "identity-verification: child-protection to civil-registry", "purpose": "identity-verification", "type": "identity.verification.request", "from": ["child-protection"], "to": ["civil-registry"], "ok": true},
	{"note": "identity-verification: consular to civil-registry", "purpose": "identity-verification", "type": "identity.verification.request", "from": ["consular"], "to": ["civil-registry"], "ok": true},
	{"note": "identity-verification: law-enforcement may not ask", "purpose": "identity-verification", "type": "identity.verification.request", "from": ["law-enforcement"], "to": ["civil-registry"], "ok": false},
	{"note": "identity-verification: only a civil registry answers", "purpose": "identity-verification", "type": "identity.verification.request", "from": ["consular"], "to": ["consular"], "ok": false},
	{"note": "identity-verification: the registry responds (reverse)", "purpose": "identity-verification", "type": "identity.verification.response", "from": ["civil-registry"], "to": ["humanitarian"], "ok": true},
	{"note": "identity-verification: a requester may not respond", "purpose": "identity-verification", "type": "identity.verification.response", "from": ["humanitarian"], "to": ["civil-registry"], "ok": false},
	{"note": "identity-verification: no referral", "purpose": "identity-verification", "type": "referral", "from": ["consular"], "to": ["civil-registry"], "ok": false},
	{"note": "repatriation-logistics: border-management to humanitarian", "purpose": "repatriation-logistics", "type": "referral", "from": ["border-management"], "to": ["humanitarian"], "ok": true},
	{"note": "repatriation-logistics: not to social-services", "purpose": "repatriation-logistics", "type": "referral", "from": ["consular"], "to": ["social-services"], "ok": false},
	{"note": "repatriation-logistics: no referral.response", "purpose": "repatriation-logistics", "type": "referral.response", "from": ["consular"], "to": ["consular"], "ok": false},
	{"note": "family-tracing: social-services to child-protection", "purpose": "family-tracing", "type": "referral", "from": ["social-services"], "to": ["child-protection"], "ok": true},
	{"note": "family-tracing: not from consular", "purpose": "family-tracing", "type": "referral", "from": ["consular"], "to": ["child-protection"], "ok": false},
	{"note": "rehabilitation-referral: consular to health", "purpose": "rehabilitation-referral", "type": "referral", "from": ["consular"], "to": ["health"], "ok": true},
	{"note": "rehabilitation-referral: not from humanitarian", "purpose": "rehabilitation-referral", "type": "referral", "from": ["humanitarian"], "to": ["health"], "ok": false},
	{"note": "rehabilitation-referral: response from health to social-services", "purpose": "rehabilitation-referral", "type": "referral.response", "from": ["health"], "to": ["social-services"], "ok": true},
	{"note": "rehabilitation-referral: withdrawal from the referrer", "purpose": "rehabilitation-referral", "type": "consent.withdrawal", "from": ["social-services"], "to": ["child-protection"], "ok": true},
	{"note": "rehabilitation-referral: withdrawal not from a recipient", "purpose": "rehabilitation-referral", "type": "consent.withdrawal", "from": ["health"], "to": ["child-protection"], "ok": false},
	{"note": "prosecution-evidence: law-enforcement to child-justice", "purpose": "prosecution-evidence", "type": "referral", "from": ["law-enforcement"], "to": ["child-justice"], "ok": true},
	{"note": "prosecution-evidence: not to social-services", "purpose": "prosecution-evidence", "type": "referral", "from": ["law-enforcement"], "to": ["social-services"], "ok": false},
	{"note": "prosecution-evidence: child-justice may not send", "purpose": "prosecution-evidence", "type": "referral", "from": ["child-justice"], "to": ["prosecution"], "ok": false},
	{"note": "prosecution-evidence: no withdrawal", "purpose": "prosecution-evidence", "type": "consent.withdrawal", "from": ["law-enforcement"], "to": ["prosecution"], "ok": false},
	{"note": "border-screening: border-management both ways", "purpose": "border-screening", "type": "identity.verification.request", "from": ["border-management"], "to": ["law-enforcement"], "ok": true},
	{"note": "border-screening: not from consular", "purpose": "border-screening", "type": "identity.verification.request", "from": ["consular"], "to": ["border-management"], "ok": false},
	{"note": "hr-monitoring: consular to monitors", "purpose": "hr-monitoring", "type": "referral", "from": ["consular"], "to": ["human-rights-monitoring"], "ok": true},
	{"note": "hr-monitoring: monitors only receive from the listed", "purpose": "hr-monitoring", "type": "referral", "from": ["prosecution"], "to": ["human-rights-monitoring"], "ok": false},
	{"note": "hr-monitoring: no referral.response", "purpose": "hr-monitoring", "type": "referral.response", "from": ["human-rights-monitoring"], "to": ["consular"], "ok": false},
	{"note": "unknown purpose", "purpose": "research", "type": "referral", "from": ["consular"], "to": ["consular"], "ok": false},
	{"note": "purpose not a string", "purpose": 7, "type": "referral", "from": ["consular"], "to": ["consular"], "ok": false},
]

_input(tc) := {
	"message": {"type": tc.type, "purpose": tc.purpose},
	"sender": {"id": "A", "roles": tc.from},
	"recipient": {"id": "B", "roles": tc.to},
}

test_permitted[tc.note] if {
	some tc in role_cases
	tc.ok == _permitted with input as _input(tc)
	_want_deny(tc.ok) == {r.rule | some r in purpose.deny} with input as _input(tc)
}

_permitted if {
	purpose.permitted
} else := false

_want_deny(true) := set()

_want_deny(false) := {"R2"}

test_unknown_purpose_is_not_echoed if {
	denials := purpose.deny with input as _input({"type": "referral", "purpose": "name of a person", "from": [], "to": []})
	count(denials) > 0
	every r in denials {
		not contains(r.message, "name of a person")
	}
}

test_catalogue_is_data if {
	inp := _input({"type": "referral", "purpose": "hr-monitoring", "from": ["health"], "to": ["human-rights-monitoring"]})
	not purpose.permitted with input as inp
	purpose.permitted with input as inp with data.xborder_data.purposes["hr-monitoring"].senders as ["health"]
}

test_fixtures_are_permitted[name] if {
	some name, inp in {"referral": fx.referral, "verification": fx.verification, "answer": fx.answer, "screening": fx.screening, "prosecution": fx.prosecution}
	purpose.permitted with input as inp
}

test_missing_type_is_denied if {
	inp := {"message": {"purpose": "hr-monitoring"}, "sender": {"roles": ["consular"]}, "recipient": {"roles": ["human-rights-monitoring"]}}
	{r.rule | some r in purpose.deny} == {"R2"} with input as inp
}
