# R10 minimisation, with the rules that remove fields for a reason of their
# own: R8 (protection data stays protection data), R6 (a child's biometrics),
# R12 (biometrics one-to-one), R11 and R15 (verification answers).
#
# Top-level protocol fields always pass. Inside subject and record only the
# fields on the allow-list of the purpose and message type pass (data:
# allow_lists); everything else, known or unknown, is removed. Each removed
# path carries exactly one reason: the most specific rule that removes it.
package xborder.minimise

import data.xborder.age
import data.xborder.children
import data.xborder.lib
import data.xborder.response
import data.xborder_data as cfg

# removals: path -> {"rule", "message"}.
removals[path] := why if {
	some section in ["subject", "record"]
	is_object(lib.msg[section])
	some field, _ in lib.msg[section]
	path := concat(".", [section, field])
	why := _why(section, field, path)
}

# A subject or record that is not an object is removed whole.
removals[section] := {"rule": "R10", "message": sprintf("removed %s: it is not an object", [section])} if {
	some section in ["subject", "record"]
	_has(lib.msg, section)
	not is_object(lib.msg[section])
}

# Unknown top-level fields (the gateway refuses them first: defence in depth).
removals[key] := {"rule": "R10", "message": sprintf("removed %s: not a protocol field", [key])} if {
	some key, _ in lib.msg
	not key in cfg.top_level_fields
}

_has(obj, key) if _ = obj[key]

_why(section, field, path) := {"rule": "R8", "message": sprintf("removed %s (L4): protection data is never sent for %s", [path, lib.purpose])} if {
	path in cfg.levels.L4
	lib.purpose in cfg.l4.never_purposes
} else := {"rule": "R6", "message": sprintf("removed %s: a child's biometrics never reach a law-enforcement, border-management or prosecution recipient", [path])} if {
	path == "subject.biometrics"
	children.biometrics_barred
} else := {"rule": "R12", "message": sprintf("removed %s: biometrics only for identity-verification requests in 1:1 mode with a dpia_id", [path])} if {
	path == "subject.biometrics"
	not _biometrics_ok
} else := {"rule": "R10", "message": sprintf("removed %s (L4): L4 sections go only to %s recipients of %s", [path, concat(", ", cfg.l4.recipient_roles), concat(", ", cfg.l4.purposes)])} if {
	path in cfg.levels.L4
	not _l4_ok
} else := {"rule": "R15", "message": sprintf("removed %s: it answers an assertion the request did not ask", [path])} if {
	section == "record"
	response.unasked(field)
} else := {"rule": "R11", "message": sprintf("removed %s: a verification answer carries only assertions, never the registry record", [path])} if {
	lib.type == "identity.verification.response"
	not _listed(section, field, path)
} else := {"rule": "R10", "message": sprintf("removed %s (%s): not on the allow-list of %s", [path, _level(path), _list_name])} if {
	not _listed(section, field, path)
}

# --- allow-lists ------------------------------------------------------------

_entry := cfg.allow_lists[lib.purpose][lib.type]

# A purpose may narrow its allow-list for children (repatriation-logistics:
# document fields only).
allow_list := _entry.child if {
	age.child_in_message
	_entry.child
} else := _entry

_list_name := sprintf("%s (%s, child)", [lib.purpose, lib.type]) if {
	age.child_in_message
	_entry.child
} else := sprintf("%s (%s)", [lib.purpose, lib.type]) if {
	_entry
} else := "any purpose for this message type"

_listed(section, field, path) if {
	field in allow_list[section]
	_condition_met(path)
}

_condition_met(path) if not _entry.when[path]

_condition_met(path) if {
	cond := _entry.when[path]
	object.get(lib.msg, split(cond.path, "."), null) in cond.in
}

# --- biometrics (R12) and L4 (R10) ---------------------------------------

_bio := lib.subject.biometrics

_biometrics_ok if {
	lib.purpose in cfg.biometrics.purposes
	lib.type in cfg.biometrics.types
	_bio.mode == cfg.biometrics.mode
	is_string(_bio.dpia_id)
	_bio.dpia_id != ""
}

_l4_ok if {
	lib.purpose in cfg.l4.purposes
	some role in cfg.l4.recipient_roles
	role in lib.recipient_roles
}

# --- data category of a path, for the reason sentence ---------------------

_level(path) := "L4" if {
	path in cfg.levels.L4
} else := "L3" if {
	path in cfg.levels.L3
} else := "L3: a child's core identity" if {
	path in cfg.levels.L2
	age.child_in_message
} else := "L2" if {
	path in cfg.levels.L2
} else := "unlisted field"
