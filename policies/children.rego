# R6 no screening of children and R7 minimum age of criminal responsibility.
# METADATA
# title: R6 no screening of children, R7 minimum age of criminal responsibility
# custom:
#   rules:
#     R6: [deny]
#     R7: [deny]
package xborder.children

import data.xborder.age
import data.xborder.lib
import data.xborder_data as cfg

# --- R6 --------------------------------------------------------------------

deny contains r if {
	lib.purpose in cfg.screening.no_children_purposes
	age.child_in_message
	r := {"rule": "R6", "message": sprintf("the subject is a child or of unknown age: a child's data is never sent for %s", [lib.purpose])}
}

# A child's biometrics never reach these recipients: they are removed (see
# minimise.rego), so that the rest of the message can still go.
biometrics_barred if {
	age.child_in_message
	some role in cfg.screening.no_child_biometrics_roles
	role in lib.recipient_roles
}

# --- R7 --------------------------------------------------------------------

_applies if {
	lib.purpose in cfg.prosecution.purposes
	not lib.is_withdrawal
}

_crc := cfg.thresholds.criminal_responsibility

# The minimum age of criminal responsibility of the sender's country.
macr := n if {
	n := _crc.by_country[input.sender.country]
} else := _crc.default

deny contains r if {
	_applies
	some r in _r7_denials
}

_r7_denials contains {"rule": "R7", "message": "record.offence_date is not a valid date: the age at the time of the conduct cannot be established"} if {
	age.offence_date_invalid
}

_r7_denials contains {"rule": "R7", "message": "the conduct took place under the minimum age of criminal responsibility of the sender's country"} if {
	age.conduct_years < macr
}

# CRC General Comment 24: without proof that the child was at or above the
# minimum age, the child is not held criminally responsible.
_r7_denials contains {"rule": "R7", "message": "the subject's age at the time of the conduct is unknown: it cannot be shown to be at or above the minimum age of criminal responsibility"} if {
	not lib.is_response
	not age.offence_date_invalid
	not age.conduct_known
}

_r7_denials contains r if {
	_child_at_conduct
	not cfg.prosecution.child_recipient_role in lib.recipient_roles
	r := {"rule": "R7", "message": sprintf("prosecution evidence about a child may go only to a %s recipient", [cfg.prosecution.child_recipient_role])}
}

_child_at_conduct if age.conduct_years < cfg.thresholds.adult

_child_at_conduct if {
	not lib.is_response
	not age.conduct_known
}
