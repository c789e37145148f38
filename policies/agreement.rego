# R3 agreement: an active data-sharing agreement (policy data: parties,
# purposes, valid_from and valid_until, both inclusive, UTC days) covers the
# sender, the recipient and the purpose.
#
# A consent.withdrawal only protects the subject, and the recipients of
# earlier referrals must be told even after the agreement has ended (R16):
# for it, an agreement that has started is enough.
package xborder.agreement

import data.xborder.lib
import data.xborder_data as cfg

# covering: the ids of the agreements that cover this exchange.
covering contains a.id if {
	some a in cfg.agreements
	input.sender.id in a.parties
	input.recipient.id in a.parties
	lib.purpose in a.purposes
	_in_force(a)
}

covered if count(covering) > 0

_in_force(a) if {
	not lib.is_withdrawal
	_started(a)
	lib.today_ordinal <= lib.ordinal(lib.day(a.valid_until))
}

_in_force(a) if {
	lib.is_withdrawal
	_started(a)
}

_started(a) if lib.ordinal(lib.day(a.valid_from)) <= lib.today_ordinal

deny contains r if {
	not covered
	r := {"rule": "R3", "message": "no active data-sharing agreement covers the sender, the recipient and the purpose"}
}
