package xborder.minimise_test

import data.xborder.fixtures_test as fx
import data.xborder.minimise

# path -> rule of every removal
_removed(inp) := got if {
	got := {p: why.rule | some p, why in minimise.removals} with input as inp
}

_bio(patch) := object.union(fx.verification, {"message": {"subject": {"biometrics": patch}}})

cases := [
	{"note": "identity-verification request keeps identity and 1:1 biometrics, drops location (s01)", "input": fx.verification, "want": {"subject.location": "R10"}},
	{"note": "biometrics 1:N", "input": _bio({"mode": "1:N"}), "want": {"subject.location": "R10", "subject.biometrics": "R12"}},
	{"note": "biometrics without a DPIA", "input": json.remove(fx.verification, ["message/subject/biometrics/dpia_id"]), "want": {"subject.location": "R10", "subject.biometrics": "R12"}},
	{"note": "a child's biometrics to a registry that is also police", "input": object.union(fx.verification, {"recipient": {"roles": ["civil-registry", "law-enforcement"]}}), "want": {"subject.location": "R10", "subject.biometrics": "R6"}},
	{"note": "biometrics in a referral (s16)", "input": object.union(fx.referral, {"message": {"subject": {"biometrics": {"mode": "1:1", "dpia_id": "D"}}}}), "want": {"subject.biometrics": "R12"}},
	{"note": "rehabilitation to child protection keeps L4 and health", "input": fx.referral, "want": {}},
	{"note": "rehabilitation drops allegations (s03)", "input": object.union(fx.referral, {"message": {"record": {"allegations": {}}}}), "want": {"record.allegations": "R10"}},
	{"note": "L4 to a humanitarian-only recipient", "input": object.union(fx.referral, {"recipient": fx.iom, "message": {"to": "UN-IOM"}}), "want": {"record.psychosocial": "R10"}},
	{"note": "L4 to a health recipient", "input": object.union(fx.referral, {"recipient": {"roles": ["health"]}}), "want": {}},
	{"note": "legal_status without legal aid", "input": object.union(fx.referral, {"message": {"record": {"legal_status": {}}}}), "want": {"record.legal_status": "R10"}},
	{"note": "legal_status with legal aid", "input": object.union(fx.referral, {"message": {"record": {"legal_status": {}, "service_type": "legal_aid"}}}), "want": {}},
	{"note": "unknown subject field", "input": object.union(fx.referral, {"message": {"subject": {"favourite_colour": "blue"}}}), "want": {"subject.favourite_colour": "R10"}},
	{"note": "unknown top-level field", "input": object.union(fx.referral, {"message": {"extra": 1}}), "want": {"extra": "R10"}},
	{"note": "subject not an object", "input": object.union(fx.referral, {"message": {"subject": "text"}}), "want": {"subject": "R10"}},
	{"note": "prosecution drops L4 (R8) and location (s08)", "input": object.union(fx.prosecution, {"message": {"record": {"psychosocial": {}, "gbv": {}}}}), "want": {"record.psychosocial": "R8", "record.gbv": "R8", "subject.relationships": "R10", "subject.location": "R10", "subject.birth_date_basis": "R10"}},
	{"note": "screening drops L4 (R8)", "input": object.union(fx.screening, {"message": {"record": {"child_statement": {}}}}), "want": {"record.child_statement": "R8", "subject.relationships": "R10", "subject.location": "R10", "subject.birth_date_basis": "R10"}},
	{"note": "verification answer keeps the asked assertions", "input": fx.answer, "want": {}},
	{"note": "verification answer drops the registry record (s11)", "input": object.union(fx.answer, {"message": {"subject": {"names": {}}, "record": {"registry_record": {}}}}), "want": {"subject.names": "R11", "record.registry_record": "R11"}},
	{"note": "verification answer to an unasked assertion", "input": object.union(fx.answer, {"message": {"record": {"document_valid": true}}}), "want": {"record.document_valid": "R15"}},
	{"note": "repatriation of an adult keeps needs and notes", "input": _repatriation("1990-01-01"), "want": {"subject.birth_date_basis": "R10", "subject.location": "R10"}},
	{"note": "repatriation of a child: document fields only", "input": _repatriation("2018-04-12"), "want": {"subject.birth_date_basis": "R10", "subject.location": "R10", "record.needs": "R10", "record.notes": "R10"}},
	{"note": "hr-monitoring keeps only ref, sex, birth date, location", "input": object.union(fx.referral, {"recipient": fx.ohchr, "message": {"purpose": "hr-monitoring", "to": "UN-OHCHR"}}), "want": {"subject.names": "R10", "subject.birth_date_basis": "R10", "subject.nationality_claimed": "R10", "subject.relationships": "R10", "record.priority": "R10", "record.needs": "R10", "record.psychosocial": "R10"}},
	{"note": "a withdrawal carries only subject.ref", "input": json.patch(fx.referral, [{"op": "replace", "path": "/message/type", "value": "consent.withdrawal"}]), "want": {"subject.names": "R10", "subject.birth_date": "R10", "subject.birth_date_basis": "R10", "subject.sex": "R10", "subject.nationality_claimed": "R10", "subject.relationships": "R10", "subject.location": "R10", "record.service_type": "R10", "record.priority": "R10", "record.needs": "R10", "record.notes": "R10", "record.health": "R10", "record.psychosocial": "R10", "consent.basis": "R10", "consent.given_by": "R10", "consent.representative_relation": "R10", "consent.child_assent": "R10", "consent.recipients": "R10", "consent.purposes": "R10", "consent.obtained_at": "R10", "consent.expires_at": "R10"}},
]

# The members and forms of consent and of structured fields (a table of its
# own: opa test gives each test 5 s, and every case evaluates the data's
# views afresh under its own input).
member_cases := [
	# DOMAIN R10: consent passes with its §5 members only, override with its own.
	{"note": "consent keeps its DOMAIN §5 members", "input": fx.referral, "want": {}},
	{"note": "an unknown consent member is removed", "input": object.union(fx.referral, {"message": {"consent": {"subject": {"names": "x"}, "Psychosocial": "x"}}}), "want": {"consent.subject": "R10", "consent.Psychosocial": "R10"}},
	{"note": "an unknown override member is removed", "input": object.union(fx.referral, {"message": {"consent": {"override": {"reason": "r", "bia_ref": "B", "approved_by_role": "child-protection", "notes": "x"}}}}), "want": {"consent.override.notes": "R10"}},
	{"note": "consent members are matched exactly (case)", "input": object.union(fx.referral, {"message": {"consent": {"ID": "x"}}}), "want": {"consent.ID": "R10"}},
	{"note": "consent that is not an object is removed", "input": object.union(fx.referral, {"message": {"consent": "yes"}}), "want": {"consent": "R10"}},
	# DOMAIN §4: a structured field carries its own members only.
	{"note": "an unknown member of names is removed", "input": object.union(fx.referral, {"message": {"subject": {"names": {"primary": "P", "nickname": "x"}}}}), "want": {"subject.names.nickname": "R10"}},
	{"note": "an unknown member of every document is removed", "input": object.union(fx.verification, {"message": {"subject": {"documents": [{"code": "P", "number": "1", "photo": "x"}, {"code": "ID", "chip": {}}]}}}), "want": {"subject.location": "R10", "subject.documents.photo": "R10", "subject.documents.chip": "R10"}},
	{"note": "members of a removed field are not listed again", "input": object.union(fx.referral, {"message": {"subject": {"biometrics": {"mode": "1:1", "dpia_id": "D", "raw": "x"}}}}), "want": {"subject.biometrics": "R12"}},
	# DOMAIN §4-§5: a field that passes carries only its own form.
	{"note": "protection data hidden in requested_assertions", "input": object.union(fx.verification, {"message": {"record": {"requested_assertions": [{"psychosocial": "x"}]}}}), "want": {"subject.location": "R10", "record.requested_assertions": "R10"}},
	{"note": "an object where a string belongs", "input": object.union(fx.referral, {"message": {"record": {"priority": {"gbv": "x"}}}}), "want": {"record.priority": "R10"}},
	{"note": "an object where a document number belongs", "input": object.union(fx.verification, {"message": {"subject": {"documents": [{"code": "P", "number": {"x": 1}}, {"code": "ID", "number": "7"}]}}}), "want": {"subject.location": "R10", "subject.documents.number": "R10"}},
	{"note": "a list where the override belongs", "input": object.union(fx.referral, {"message": {"consent": {"override": ["x"]}}}), "want": {"consent.override": "R10"}},
	{"note": "a list where names belongs, a member out of form inside", "input": object.union(fx.referral, {"message": {"subject": {"names": [{"primary": 5, "secondary": "S"}, "x"]}}}), "want": {"subject.names": "R10", "subject.names.primary": "R10"}},
	{"note": "one object where a list of documents belongs", "input": object.union(fx.verification, {"message": {"subject": {"documents": {"code": "P", "number": 7}}}}), "want": {"subject.location": "R10", "subject.documents": "R10", "subject.documents.number": "R10"}},
	{"note": "a list of strings with an object in it", "input": object.union(fx.verification, {"message": {"record": {"requested_assertions": ["nationality", {"x": 1}]}}}), "want": {"subject.location": "R10", "record.requested_assertions": "R10"}},
	{"note": "a member out of form in the second document only", "input": object.union(fx.verification, {"message": {"subject": {"documents": [{"code": "P"}, {"code": ["ID"]}]}}}), "want": {"subject.location": "R10", "subject.documents.code": "R10"}},
	{"note": "a dotted sibling never removes the field it spells", "input": object.union(fx.referral, {"message": {"subject": {"names": {"primary": "P"}, "names.primary": "x"}}}), "want": {"subject.names.primary": "R10"}},
]

_repatriation(birth) := object.union(json.remove(fx.referral, ["message/record/psychosocial", "message/record/health"]), {
	"recipient": fx.iom,
	"message": {"purpose": "repatriation-logistics", "to": "UN-IOM", "subject": {"birth_date": birth}},
})

test_removals[tc.note] if {
	some tc in cases
	got := _removed(tc.input)
	got == tc.want
}

test_member_and_form_removals[tc.note] if {
	some tc in member_cases
	got := _removed(tc.input)
	got == tc.want
}

test_allow_lists_are_data if {
	inp := object.union(fx.referral, {"message": {"record": {"allegations": {}}}})
	_removed(inp) == {"record.allegations": "R10"}
	_removed(inp) == {} with data.xborder_data.allow_lists["rehabilitation-referral"].referral.record as ["service_type", "priority", "needs", "notes", "health", "psychosocial", "allegations"]
}

test_reason_sentences_name_paths_not_values if {
	inp := object.union(fx.referral, {"message": {"record": {"allegations": {"summary": "SECRET-VALUE"}}}})
	removals := minimise.removals with input as inp
	some p, why in removals
	p == "record.allegations"
	contains(why.message, "record.allegations")
	not contains(why.message, "SECRET-VALUE")
}

test_unlisted_names_never_in_reasons if {
	inp := object.union(fx.referral, {"message": {
		"subject": {"ABENOVA": 1, "names": {"primary": "P", "AIGERIM": 1}},
		"record": {"KARIMOVA": {}},
		"consent": {"ZHANAR": 1, "override": {"reason": "r", "bia_ref": "B", "approved_by_role": "child-protection", "DILNAZ": 1}},
	}})
	removals := minimise.removals with input as inp
	count(removals) == 5
	every _, why in removals {
		not regex.match(`ABENOVA|AIGERIM|KARIMOVA|ZHANAR|DILNAZ`, why.message)
	}
}

test_known_fields_named_in_reasons if {
	inp := object.union(fx.referral, {"message": {"consent": {"override": {"reason": "r", "bia_ref": "B", "approved_by_role": "child-protection"}}}})
	removals := minimise.removals with input as json.patch(inp, [{"op": "replace", "path": "/message/type", "value": "consent.withdrawal"}])
	contains(removals["consent.override"].message, "consent.override")
	contains(removals["subject.names"].message, "subject.names")
}
