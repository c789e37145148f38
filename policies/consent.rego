# R5 child age bands, R9 referral consent and R16 withdrawn consent.
# METADATA
# title: R5/R9 referral consent and best-interests override, R16 withdrawn consent
# custom:
#   rules:
#     R5: [deny]
#     R9: [deny, review]
#     R16: [deny]
package xborder.consent

import data.xborder.age
import data.xborder.lib
import data.xborder_data as cfg

# R9 applies to a referral for a purpose whose catalogue entry requires
# consent (rehabilitation-referral, family-tracing, hr-monitoring).
applies if {
	lib.type == "referral"
	cfg.purposes[lib.purpose].consent_required == true
}

_c := lib.consent

_present if count(lib.consent) > 0

_is_consent if _c.basis == "consent"

_is_override if _c.basis == "best_interests_override"

# review: the referral relies on a best-interests override (R9), so the
# decision is marked for review.
default review := false

review if {
	applies
	_is_override
}

_r9(msg) := {"rule": "R9", "message": msg}

deny contains r if {
	applies
	not _consent_in_order
	some r in _r9_denials
}

# A consent that passes every check below has no R9 denial. The checks are
# repeated here in one body, so that a referral in order costs one rule; only
# a referral that fails one is explained check by check.
_consent_in_order if {
	c := lib.consent
	c.basis == "consent"
	input.recipient.id in c.recipients
	lib.purpose in c.purposes
	now := lib.now_ns
	lib.ns(c.expires_at) > now
	lib.ns(c.obtained_at) <= now
	age.consent_fits(c.given_by, c.child_assent)
}

_r9_denials contains _r9(sprintf("a referral for %s needs a consent or a best-interests override", [lib.purpose])) if not _present

_r9_denials contains _r9("consent.basis is neither consent nor best_interests_override") if {
	_present
	not _is_consent
	not _is_override
}

# Each basis has its own checks, evaluated only for a referral that relies
# on it.
_r9_denials contains r if {
	_is_consent
	some r in _consent_denials
}

_r9_denials contains r if {
	_is_override
	some r in _override_denials
}

# --- scope: recipient, purpose, time --------------------------------------

_names_recipient if input.recipient.id in _c.recipients

_names_purpose if lib.purpose in _c.purposes

_unexpired if lib.ns(_c.expires_at) > lib.now_ns

_consent_denials contains _r9("the consent does not name the recipient") if not _names_recipient

_consent_denials contains _r9("the consent does not name the purpose") if not _names_purpose

_consent_denials contains _r9("the consent is expired or has no valid consent.expires_at") if not _unexpired

_consent_denials contains _r9("the consent's obtained_at is not a time before the decision") if not _obtained_before

_obtained_before if lib.ns(_c.obtained_at) <= lib.now_ns

# --- fit with the age bands (R5) --------------------------------------------

_consent_denials contains r if {
	not _fits
	some r in [
		{"rule": "R9", "message": "the consent does not fit the subject's age band"},
		{"rule": "R5", "message": _band_message[age.band]},
	]
}

# Absent given_by or child_assent fit no band.
_fits if age.consent_fits(_c.given_by, _c.child_assent)

_band_message := {
	"unknown": "with an unknown age, a representative consents and the child's assent is recorded",
	"representative-only": "under the representative-only age a representative consents (with the child's assent where the child is in the assent band)",
	"either": "in this age band a representative (with the child's assent) or the child consents",
	"child-only": "from the child-only age the child gives the consent",
	"adult": "an adult gives their own consent",
}

# --- best-interests override ------------------------------------------------
# The override stands in for consent, but scope fields it carries (recipients,
# purposes, expires_at) still bind.

_override_denials contains _r9(sprintf("a best-interests override needs override.bia_ref and override.approved_by_role %s", [cfg.consent.override_approver_role])) if {
	not _override_approved
}

_override_approved if {
	_c.override.approved_by_role == cfg.consent.override_approver_role
	is_string(_c.override.bia_ref)
	_c.override.bia_ref != ""
}

_override_denials contains _r9("a best-interests override applies only to a child") if not age.child

_override_denials contains _r9("the override's consent.recipients does not name the recipient") if {
	_c.recipients
	not _names_recipient
}

_override_denials contains _r9("the override's consent.purposes does not name the purpose") if {
	_c.purposes
	not _names_purpose
}

_override_denials contains _r9("the override is expired or its consent.expires_at is not a valid time") if {
	_c.expires_at
	not _unexpired
}

# --- R16 withdrawn consent --------------------------------------------------

deny contains {"rule": "R16", "message": "the consent this message relies on has been withdrawn"} if {
	input.consent_withdrawn == true
	not lib.is_withdrawal
}

deny contains {"rule": "R16", "message": "a consent.withdrawal must name the withdrawn consent by consent.id"} if {
	lib.is_withdrawal
	not _names_consent_id
}

_names_consent_id if {
	is_string(_c.id)
	_c.id != ""
}
