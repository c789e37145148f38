# R11 verification answers are assertions, R15 answers bind to requests.
#
# The gateway looks up the accepted request named by in_reply_to and passes
# its metadata as input.request (null or absent when there is none).
# METADATA
# title: R11 verification answers are assertions, R15 answers bind to requests
# custom:
#   rules:
#     R11: [deny]
#     R15: [deny]
package xborder.response

import data.xborder.lib
import data.xborder_data as cfg

_req := input.request

_has_request if is_object(_req)

_r15(msg) := {"rule": "R15", "message": msg}

# Each check applies to responses only.
deny contains r if {
	lib.is_response
	some r in _r15_denials
}

_r15_denials contains _r15("a response must name an accepted request by in_reply_to") if not _has_request

_r15_denials contains _r15("in_reply_to does not name the accepted request") if {
	_has_request
	lib.msg.in_reply_to != _req.id
}

_r15_denials contains _r15("in_reply_to is missing") if not lib.msg.in_reply_to

_r15_denials contains _r15("a response goes back to the sender of the request") if {
	_has_request
	not _reversed
}

_reversed if {
	_req.from == input.recipient.id
	_req.to == input.sender.id
}

_r15_denials contains _r15("a response keeps the purpose of its request") if {
	_has_request
	_req.purpose != lib.purpose
}

_r15_denials contains _r15("the answered request is not of the type this response answers") if {
	_has_request
	_req.type != cfg.responses[lib.type]
}

# --- R11 ------------------------------------------------------------------

_verification if lib.type == "identity.verification.response"

deny contains r if {
	_verification
	some r in _r11_denials
}

_r11_denials contains {"rule": "R11", "message": "record.outcome must be one of the verification outcomes"} if not _outcome_valid

_outcome_valid if lib.record.outcome in cfg.verification.outcomes

# No automated adverse decision: a human role decides and is named.
_r11_denials contains {"rule": "R11", "message": "record.decided_by must name the human role that decided"} if not _decided_by_named

_decided_by_named if {
	is_string(lib.record.decided_by)
	trim_space(lib.record.decided_by) != ""
}

# --- assertions that were asked (R15) ------------------------------------
# An answer to an assertion the request did not ask is removed, not denied:
# what was asked still reaches the requester, and nothing else does.

_assertion_fields contains f if {
	some fields in cfg.verification.assertion_fields
	some f in fields
}

answerable contains f if some f in cfg.verification.always_answered

answerable contains f if {
	some a in _req.requested_assertions
	some f in cfg.verification.assertion_fields[a]
}

# unasked(field): record.<field> answers an assertion that was not asked.
unasked(field) if field in unasked_fields

# unasked_fields: the record fields that answer an assertion that was not
# asked.
default unasked_fields := set()

unasked_fields := _assertion_fields - answerable if _verification
