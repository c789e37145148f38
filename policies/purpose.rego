# R2 purpose: the purpose is in the catalogue, the message type is allowed
# for it, the sender holds a sender role and the recipient a recipient role.
# For a response the role columns are read in reverse.
# METADATA
# title: R2 purpose catalogue, message types and roles
# custom:
#   rules:
#     R2: [deny]
package xborder.purpose

import data.xborder.lib
import data.xborder_data as cfg

entry := cfg.purposes[lib.purpose] if is_string(lib.purpose)

known if entry

# (a missing message.type is simply not allowed)
type_allowed if lib.type in entry.types

# Roles the sender must hold one of, and the recipient one of.
sender_roles := entry.recipients if {
	lib.is_response
} else := entry.senders

recipient_roles := entry.senders if {
	lib.is_response
} else := entry.recipients

sender_ok if {
	some role in sender_roles
	role in lib.sender_roles
}

recipient_ok if {
	some role in recipient_roles
	role in lib.recipient_roles
}

# permitted: the positive statement R1 requires before anything is allowed.
# (type_allowed implies known)
permitted if {
	type_allowed
	sender_ok
	recipient_ok
}

# (a permitted message has no R2 denial)
deny contains r if {
	not permitted
	some r in _denials
}

_denials contains {"rule": "R2", "message": "message.purpose is not in the purpose catalogue"} if not known

_denials contains r if {
	known
	not type_allowed
	r := {"rule": "R2", "message": sprintf("message.type is not allowed for %s", [lib.purpose])}
}

_denials contains r if {
	known
	not sender_ok
	r := {"rule": "R2", "message": sprintf("the sender holds no role that may send %s for %s", [_direction, lib.purpose])}
}

_denials contains r if {
	known
	not recipient_ok
	r := {"rule": "R2", "message": sprintf("the recipient holds no role that may receive %s for %s", [_direction, lib.purpose])}
}

_direction := "a response" if {
	lib.is_response
} else := "this message"
