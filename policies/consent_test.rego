package xborder.consent_test

import data.xborder.consent
import data.xborder.fixtures_test as fx

_rules(set) := {r.rule | some r in set}

_with_consent(patch) := object.union(fx.referral, {"message": {"consent": patch}})

_aged(birth, patch) := object.union(fx.referral_aged({"birth_date": birth}), {"message": {"consent": patch}})

_override := {
	"id": "C-OVR",
	"basis": "best_interests_override",
	"override": {"approved_by_role": "child-protection", "reason": "test", "bia_ref": "BIA-1"},
	"recipients": ["UN-UNICEF"],
	"purposes": ["rehabilitation-referral"],
	"expires_at": "2027-06-01T00:00:00Z",
}

_override_input(patch) := object.union(json.patch(fx.referral, [{"op": "replace", "path": "/message/consent", "value": _override}]), {"message": {"consent": patch}})

cases := [
	{"note": "valid representative consent with assent", "input": fx.referral, "want": set()},
	{"note": "no consent", "input": json.remove(fx.referral, ["message/consent"]), "want": {"R9"}},
	{"note": "expired (s04)", "input": _with_consent({"expires_at": "2026-11-01T00:00:00Z"}), "want": {"R9"}},
	{"note": "expires at the decision", "input": _with_consent({"expires_at": "2026-11-22T12:00:00Z"}), "want": {"R9"}},
	{"note": "expiry not a time", "input": _with_consent({"expires_at": "next year"}), "want": {"R9"}},
	{"note": "obtained after the decision", "input": _with_consent({"obtained_at": "2026-12-01T00:00:00Z"}), "want": {"R9"}},
	{"note": "does not name the recipient (s05)", "input": _with_consent({"recipients": ["UN-IOM"]}), "want": {"R9"}},
	{"note": "does not name the purpose", "input": _with_consent({"purposes": ["family-tracing"]}), "want": {"R9"}},
	{"note": "unknown basis", "input": _with_consent({"basis": "implied"}), "want": {"R9"}},
	{"note": "16 with a representative's consent (s06)", "input": _aged("2010-02-20", {"child_assent": "n/a"}), "want": {"R5", "R9"}},
	{"note": "16 consents for themself", "input": _aged("2010-02-20", {"given_by": "subject", "child_assent": "n/a"}), "want": set()},
	{"note": "6 without assent", "input": _aged("2020-11-22", {"child_assent": "n/a"}), "want": {"R5", "R9"}},
	{"note": "5 without assent", "input": _aged("2021-11-22", {"child_assent": "n/a"}), "want": set()},
	{"note": "13 consents alone", "input": _aged("2013-11-22", {"given_by": "subject", "child_assent": "n/a"}), "want": set()},
	{"note": "12 consents alone", "input": _aged("2013-11-23", {"given_by": "subject", "child_assent": "n/a"}), "want": {"R5", "R9"}},
	{"note": "15 today, representative", "input": _aged("2011-11-22", {}), "want": {"R5", "R9"}},
	{"note": "unknown age, representative with assent", "input": fx.referral_aged({}), "want": set()},
	{"note": "override approved by child protection (s15)", "input": _override_input({}), "want": set()},
	{"note": "override approved by social services", "input": _override_input({"override": {"approved_by_role": "social-services"}}), "want": {"R9"}},
	{"note": "override without bia_ref", "input": _override_input({"override": {"bia_ref": ""}}), "want": {"R9"}},
	{"note": "override for an adult", "input": object.union(_override_input({}), {"message": {"subject": {"birth_date": "1990-01-01"}}}), "want": {"R9"}},
	{"note": "override naming another recipient", "input": _override_input({"recipients": ["UN-IOM"]}), "want": {"R9"}},
	{"note": "override expired", "input": _override_input({"expires_at": "2026-01-01T00:00:00Z"}), "want": {"R9"}},
	{"note": "override without scope fields", "input": json.remove(_override_input({}), ["message/consent/recipients", "message/consent/purposes", "message/consent/expires_at"]), "want": set()},
	{"note": "withdrawn consent (s17)", "input": object.union(fx.referral, {"consent_withdrawn": true}), "want": {"R16"}},
	{"note": "repatriation needs no consent", "input": object.union(json.remove(fx.referral, ["message/consent"]), {"message": {"purpose": "repatriation-logistics"}}), "want": set()},
	{"note": "a response needs no consent", "input": object.union(json.remove(fx.referral, ["message/consent"]), {"message": {"type": "referral.response"}}), "want": set()},
	{"note": "family-tracing needs consent", "input": object.union(json.remove(fx.referral, ["message/consent"]), {"message": {"purpose": "family-tracing"}}), "want": {"R9"}},
	{"note": "hr-monitoring needs consent", "input": object.union(json.remove(fx.referral, ["message/consent"]), {"message": {"purpose": "hr-monitoring"}}), "want": {"R9"}},
	{"note": "a withdrawal naming a consent id", "input": _withdrawal({"id": "C-TEST-1"}), "want": set()},
	{"note": "a withdrawal under a withdrawn consent", "input": object.union(_withdrawal({"id": "C-TEST-1"}), {"consent_withdrawn": true}), "want": set()},
	{"note": "a withdrawal without a consent id", "input": _withdrawal({"id": ""}), "want": {"R16"}},
]

_withdrawal(c) := json.patch(fx.referral, [
	{"op": "replace", "path": "/message/type", "value": "consent.withdrawal"},
	{"op": "replace", "path": "/message/consent", "value": c},
	{"op": "replace", "path": "/message/subject", "value": {"ref": "S-0001"}},
	{"op": "remove", "path": "/message/record"},
])

test_consent[tc.note] if {
	some tc in cases
	_rules(consent.deny) == tc.want with input as tc.input
}

test_review[tc.note] if {
	some tc in [
		{"note": "consent", "input": fx.referral, "review": false},
		{"note": "override", "input": _override_input({}), "review": true},
	]
	consent.review == tc.review with input as tc.input
}

test_band_thresholds_are_data if {
	inp := _aged("2012-01-01", {"given_by": "subject", "child_assent": "n/a"}) # 14
	_rules(consent.deny) == set() with input as inp
	_rules(consent.deny) == {"R5", "R9"} with input as inp with data.xborder_data.thresholds.representative_only_under as 16
}

test_missing_fields_fail_closed[tc.note] if {
	some tc in [
		{"note": "no given_by", "input": json.remove(fx.referral, ["message/consent/given_by"]), "want": {"R5", "R9"}},
		{"note": "no child_assent for a child in the assent band", "input": json.remove(fx.referral, ["message/consent/child_assent"]), "want": {"R5", "R9"}},
		{"note": "no obtained_at", "input": json.remove(fx.referral, ["message/consent/obtained_at"]), "want": {"R9"}},
		{"note": "no expires_at", "input": json.remove(fx.referral, ["message/consent/expires_at"]), "want": {"R9"}},
		{"note": "no recipients", "input": json.remove(fx.referral, ["message/consent/recipients"]), "want": {"R9"}},
	]
	_rules(consent.deny) == tc.want with input as tc.input
}
