# Inputs shared by the policy tests: the demo federation's participants and
# one base message per kind of exchange. Tests vary them with object.union
# and json.remove.
package xborder.fixtures_test

now := "2026-11-22T12:00:00Z"

party(id, country, roles) := {"id": id, "kind": _kind(id), "country": country, "roles": roles, "suspended": false}

_kind(id) := "un-entity" if {
	startswith(id, "UN-")
} else := "member-state"

unicef := party("UN-UNICEF", "", ["child-protection", "humanitarian"])

iom := party("UN-IOM", "", ["humanitarian"])

ohchr := party("UN-OHCHR", "", ["human-rights-monitoring"])

mtszn := party("KZ-MTSZN", "KZ", ["social-services"])

mfa := party("KZ-MFA", "KZ", ["consular"])

mj := party("KZ-MJ", "KZ", ["civil-registry"])

mvd := party("KZ-MVD", "KZ", ["law-enforcement", "border-management"])

uzmvd := party("UZ-MVD", "UZ", ["law-enforcement", "border-management"])

gp := party("KZ-GP", "KZ", ["prosecution"])

jc := party("KZ-JC", "KZ", ["child-justice"])

tjmfa := party("TJ-MFA", "TJ", ["consular"])

child_subject := {
	"ref": "S-0001",
	"names": {"primary": "TEST", "secondary": "CHILD"},
	"birth_date": "2018-04-12",
	"birth_date_basis": "document",
	"sex": "F",
	"nationality_claimed": "KAZ",
	"relationships": [{"relation": "mother", "ref": "S-0002"}],
	"location": {"country": "SYR", "facility_type": "camp"},
}

adult_subject := object.union(child_subject, {"birth_date": "1994-07-03"})

consent := {
	"id": "C-TEST-1",
	"basis": "consent",
	"given_by": "representative",
	"representative_relation": "mother",
	"child_assent": "yes",
	"recipients": ["UN-UNICEF"],
	"purposes": ["rehabilitation-referral"],
	"obtained_at": "2026-10-01T09:00:00Z",
	"expires_at": "2027-06-01T00:00:00Z",
}

msg(type, purpose, from, to) := {
	"id": "00000000-0000-4000-8000-000000000001",
	"type": type,
	"from": from.id,
	"to": to.id,
	"purpose": purpose,
	"legal_basis": "agreement on file",
	"iat": 1795348790,
	"exp": 1795349090,
}

exchange(m, from, to) := {
	"now": now,
	"message": m,
	"sender": from,
	"recipient": to,
	"consent_withdrawn": false,
}

# A rehabilitation referral of a child from social services to UNICEF that
# every rule allows.
referral := exchange(
	object.union(msg("referral", "rehabilitation-referral", mtszn, unicef), {
		"subject": child_subject,
		"record": {
			"service_type": "mhpss",
			"priority": "high",
			"needs": ["psychosocial-support"],
			"notes": "test note",
			"psychosocial": {"assessment": "test"},
			"health": {"conditions": ["test"]},
		},
		"consent": consent,
	}),
	mtszn, unicef,
)

# referral with the subject's age fields replaced by s (birth_date,
# age_estimate: a patch over a subject without them).
referral_aged(s) := object.union(json.remove(referral, ["message/subject/birth_date"]), {"message": {"subject": s}})

# An identity verification request from UNICEF to the civil registry.
verification := exchange(
	object.union(msg("identity.verification.request", "identity-verification", unicef, mj), {
		"subject": object.union(child_subject, {"biometrics": {"modality": "face", "template_ref": "tpl-1", "mode": "1:1", "dpia_id": "DPIA-1"}}),
		"record": {"requested_assertions": ["identity_match", "nationality_confirmed"]},
	}),
	unicef, mj,
)

# The civil registry's answer to it.
answer := object.union(
	exchange(
		object.union(msg("identity.verification.response", "identity-verification", mj, unicef), {
			"in_reply_to": "00000000-0000-4000-8000-00000000aaaa",
			"subject": {"ref": "S-0001"},
			"record": {"outcome": "match", "nationality_confirmed": true, "fields_confirmed": ["names"], "decided_by": "registrar"},
		}),
		mj, unicef,
	),
	{"request": {
		"id": "00000000-0000-4000-8000-00000000aaaa",
		"type": "identity.verification.request",
		"from": "UN-UNICEF",
		"to": "KZ-MJ",
		"purpose": "identity-verification",
		"requested_assertions": ["identity_match", "nationality_confirmed"],
	}},
)

# Border screening of an adult between the two interior ministries.
screening := exchange(
	object.union(msg("identity.verification.request", "border-screening", mvd, uzmvd), {
		"subject": object.union(adult_subject, {"documents": [{"code": "P", "issuing_state": "KAZ", "number": "N0", "expiry": "2030-01-01"}]}),
		"record": {"requested_assertions": ["identity_match"]},
	}),
	mvd, uzmvd,
)

# Prosecution evidence about an adult, police to prosecutor.
prosecution := exchange(
	object.union(msg("referral", "prosecution-evidence", mvd, gp), {
		"subject": adult_subject,
		"record": {"service_type": "prosecution", "notes": "case", "offence_date": "2016-03-01", "allegations": {"summary": "test"}},
	}),
	mvd, gp,
)

# prosecution with the subject born on b and the conduct on o.
prosecution_aged(b, o) := object.union(prosecution, {"message": {
	"subject": {"birth_date": b},
	"record": {"offence_date": o},
}})
