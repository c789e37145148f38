# METADATA
# title: xborder decision
# description: |
#   The one question the gateway asks: may this message go, and what must be
#   removed first (DOMAIN.md §6 rules R1-R16, §7 decision object). Logic lives
#   in the modules of this directory; every value a compliance officer may
#   change lives in data.json under data.xborder_data.
# related_resources:
#   - description: DOMAIN.md, the policy specification
#     ref: https://github.com/xborder/xborder/blob/main/DOMAIN.md
# custom:
#   rules:
#     R1: [allow, denials]
#     R13: [retention_days]
package xborder

import data.xborder.age
import data.xborder.agreement
import data.xborder.children
import data.xborder.consent
import data.xborder.lib
import data.xborder.minimise
import data.xborder.parties
import data.xborder.purpose
import data.xborder.response
import data.xborder_data as cfg

# METADATA
# title: decision
# description: |
#   {allow, reasons: [{rule, message}], redact: [paths], obligations:
#   {retention_days, review}}. On a denial the denying rules come first.
#   Reasons never carry personal data: rule ids, field paths and catalogue
#   names only.
# entrypoint: true
# scope: document
decision := {
	"allow": allow,
	"reasons": reasons,
	"redact": redact,
	"obligations": {
		"retention_days": retention_days,
		"review": consent.review,
	},
}

# --- R1 default deny -------------------------------------------------------

_input_denials contains {"rule": "R1", "message": "input.now is not an RFC 3339 time"} if {
	not _now_valid
}

# (a helper, so that an absent input.now also counts as invalid)
_now_valid if lib.now_ns

_input_denials contains {"rule": "R1", "message": "input.message is not an object"} if {
	not is_object(input.message)
}

denials := union({
	_input_denials,
	parties.deny,
	purpose.deny,
	agreement.deny,
	age.deny,
	children.deny,
	consent.deny,
	response.deny,
})

# Only a message that the purpose catalogue and an agreement positively
# permit, and that no rule denies, is allowed.
default allow := false

allow if {
	count(denials) == 0
	purpose.permitted
	agreement.covered
}

_no_rule_allows contains {"rule": "R1", "message": "no rule allows this message"} if {
	count(denials) == 0
	not allow
}

# An allowed message has no denials. (The reasons of the removals are the
# values of minimise.removals, each a {rule, message} object.)
reasons := _ordered(minimise.removals) if {
	allow
} else := array.concat(_ordered(denials | _no_rule_allows), _ordered(minimise.removals))

# Reasons ordered by rule number, then by sentence: a {rule, message}
# object sorts by its message first. A reason given twice is listed once.
_ordered(rs) := [x[1] | some x in sort({[to_number(trim_prefix(r.rule, "R")), r] | some r in rs})]

redact := sort(object.keys(minimise.removals))

# --- R13 retention -----------------------------------------------------------

default retention_days := 0

retention_days := cfg.retention_days[lib.purpose] if is_string(lib.purpose)
