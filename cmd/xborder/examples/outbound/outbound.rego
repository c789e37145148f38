# An outbound policy of one participant, for its own edge (xborder edge,
# outbound_policies): what the participant lets leave its network, decided
# before the hub sees anything. This example is a ministry's three rules
# for the demo federation:
#
#   OUT1  prosecution evidence leaves only with a case number in record
#   OUT2  a referral about a person leaves only with a consent reference
#   OUT3  each local system (the caller: a local token's name, or "local"
#         on a loopback edge without tokens) sends only for its purposes
#
# Input: {"message": <the message as it will be signed>, "caller": "<name>"}.
# Anything but an explicit allow is a denial (default deny).
package xborder.outbound

import rego.v1

# METADATA
# title: Outbound decision
# description: '{"allow": bool, "reasons": [{"rule", "message"}]}'
# entrypoint: true
decision := {"allow": count(_denials) == 0, "reasons": [r | some r in _denials]}

_denials contains {"rule": "OUT1", "message": "prosecution evidence needs record.case_number (a case reference such as KZ-2026-00042)"} if {
	input.message.purpose == "prosecution-evidence"
	not _case_number_ok
}

_case_number_ok if regex.match(data.xborder_outbound.case_number_pattern, input.message.record.case_number)

_denials contains {"rule": "OUT2", "message": "a referral leaves only with a consent reference (consent.id)"} if {
	input.message.type == "referral"
	not _consent_id_ok
}

_consent_id_ok if {
	is_string(input.message.consent.id)
	input.message.consent.id != ""
}

_denials contains {"rule": "OUT3", "message": sprintf("this local system may not send for %s", [input.message.purpose])} if {
	not input.message.purpose in object.get(data.xborder_outbound.callers, input.caller, [])
}
