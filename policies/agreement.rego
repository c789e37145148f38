# R3 agreement: an active data-sharing agreement (policy data: parties,
# purposes, valid_from and valid_until, both inclusive, UTC days) covers the
# sender, the recipient and the purpose.
#
# A consent.withdrawal only protects the subject, and the recipients of
# earlier referrals must be told even after the agreement has ended (R16):
# for it, an agreement that has started is enough.
# METADATA
# title: R3 active data-sharing agreement
# custom:
#   rules:
#     R3: [deny]
package xborder.agreement

import data.xborder.lib
import data.xborder_data as cfg

# covering: the ids of the agreements that cover this exchange.
covering contains a.id if {
	some a in _by_party[input.sender.id]
	input.recipient.id in a.parties
	lib.purpose in a.purposes
	_in_force(a)
}

covered if count(covering) > 0

# An agreement is in force from its first to its last day; for a withdrawal,
# from its first day on.
_in_force(a) if {
	a.from <= lib.today_ordinal
	lib.today_ordinal <= a.until
} else if {
	lib.is_withdrawal
	a.from <= lib.today_ordinal
}

# The agreements of each party, with their parties and purposes as sets and
# their first and last days as ordinals ("from", "until"; absent when the
# date is not a valid YYYY-MM-DD, so that the agreement covers nothing).
# Reads data only: computed once per policy version (gateway/policy).
_by_party := {party: [a | some a in _agreements; party in a.parties] |
	some a0 in _agreements
	some party in a0.parties
}

_agreements := [object.union(
	{"id": a.id, "parties": {p | some p in a.parties}, "purposes": {p | some p in a.purposes}},
	object.union(_ordinal("from", a.valid_from), _ordinal("until", a.valid_until)),
) |
	some a in cfg.agreements
]

_ordinal(key, date) := {key: d} if {
	d := lib.day(date)
} else := {}

deny contains r if {
	not covered
	r := {"rule": "R3", "message": "no active data-sharing agreement covers the sender, the recipient and the purpose"}
}
