# R11 verification answers are assertions, R15 answers bind to requests.
#
# The gateway looks up the accepted request named by in_reply_to and passes
# its metadata as input.request (null or absent when there is none).
package xborder.response

import data.xborder.lib
import data.xborder_data as cfg

_req := input.request

_has_request if is_object(_req)

_r15(msg) := {"rule": "R15", "message": msg}

deny contains _r15("a response must name an accepted request by in_reply_to") if {
	lib.is_response
	not _has_request
}

deny contains _r15("in_reply_to does not name the accepted request") if {
	lib.is_response
	_has_request
	lib.msg.in_reply_to != _req.id
}

deny contains _r15("in_reply_to is missing") if {
	lib.is_response
	not lib.msg.in_reply_to
}

deny contains _r15("a response goes back to the sender of the request") if {
	lib.is_response
	_has_request
	not _reversed
}

_reversed if {
	_req.from == input.recipient.id
	_req.to == input.sender.id
}

deny contains _r15("a response keeps the purpose of its request") if {
	lib.is_response
	_has_request
	_req.purpose != lib.purpose
}

deny contains _r15("the answered request is not of the type this response answers") if {
	lib.is_response
	_has_request
	_req.type != cfg.responses[lib.type]
}

# --- R11 ------------------------------------------------------------------

_verification if lib.type == "identity.verification.response"

deny contains {"rule": "R11", "message": "record.outcome must be one of the verification outcomes"} if {
	_verification
	not _outcome_valid
}

_outcome_valid if lib.record.outcome in cfg.verification.outcomes

# No automated adverse decision: a human role decides and is named.
deny contains {"rule": "R11", "message": "record.decided_by must name the human role that decided"} if {
	_verification
	not _decided_by_named
}

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
unasked(field) if {
	_verification
	field in _assertion_fields
	not field in answerable
}
