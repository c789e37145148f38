# R10 minimisation, with the rules that remove fields for a reason of their
# own: R8 (protection data stays protection data), R6 (a child's biometrics),
# R12 (biometrics one-to-one), R11 and R15 (verification answers).
#
# Top-level protocol fields always pass. Inside subject and record only the
# fields on the allow-list of the purpose and message type pass (data:
# allow_lists); everything else, known or unknown, is removed. consent passes
# with its DOMAIN §5 members only (data: members.consent, or the allow-list
# entry's own consent list); inside a structured field that passes (names,
# documents, override, ...) only the members DOMAIN §4-§5 define pass (data:
# members). Each removed path carries exactly one reason: the most specific
# rule that removes it. A reason names a field by its path only when the
# path is one the data knows; a name of the sender's choosing is "an
# unlisted field" (PROTOCOL §3.2).
#
# The work per message is set arithmetic on field names: the fields present,
# minus those that pass, plus those a rule of its own may remove. Only the
# fields that end up removed get a reason. The sets built from data alone
# (_lists, _levels, _l4_fields, _top_level, _forms) do not depend on the
# message: the gateway computes them once per policy version (gateway/policy).
# METADATA
# title: R10 minimisation, and the removals of R6, R8, R11, R12, R15
# custom:
#   rules:
#     R6: [removals]
#     R8: [removals]
#     R10: [removals]
#     R11: [removals]
#     R12: [removals]
#     R15: [removals]
package xborder.minimise

import data.xborder.age
import data.xborder.children
import data.xborder.lib
import data.xborder.response
import data.xborder_data as cfg

# removals: path -> {"rule", "message"}.
removals[path] := why if {
	some section, fields in _removed
	some field in fields
	path := concat(".", [section, field])
	why := _why(section, field, _shown(section, field, path))
}

# A subject, record or consent that is not an object is removed whole.
removals[section] := {"rule": "R10", "message": sprintf("removed %s: it is not an object", [section])} if {
	some section, value in object.filter(lib.msg, _all_sections)
	not is_object(value)
}

# Unknown top-level fields (the gateway refuses them first: defence in depth).
removals[key] := {"rule": "R10", "message": "removed an unlisted top-level field: not a protocol field"} if {
	some key in (object.keys(lib.msg) - _top_level)
}

# The members of consent outside DOMAIN §5 (or outside the allow-list
# entry's own consent list, e.g. a withdrawal carries consent.id only), and
# the members of a structured field that passes outside those DOMAIN §4-§5
# define for it (in every element of an array of objects): of consent, of
# the fields of subject and record that are not removed, and of the members
# of consent that are not removed. Set operations pick the structured
# fields present, so that the work follows the message, not the data.
removals[path] := _not_a_member("consent", key, path) if {
	some key in (_member_names(lib.msg.consent) - _member_lists.consent)
	path := concat(".", ["consent", key])
}

removals[path] := _not_a_member(parent, key, path) if {
	some [section, field] in _other_members
	parent := concat(".", [section, field])
	some key in (_member_names(lib.msg[section][field]) - _member_lists[parent])
	path := concat(".", [parent, key])
}

# The structured fields that pass and carry a member outside their list:
# the schema of the forms (below) lists the members of each structured
# field and reports the value that carries another, so that the members
# are enumerated only where one is out of its list.
_other_members contains [section, field] if {
	some e in _form_errors
	e.type == "additional_property_not_allowed"
	[section, field] = array.slice(split(e.field, "."), 0, 2)
	field in _kept[section]
}

_not_a_member(parent, key, path) := {"rule": "R10", "message": sprintf("removed %s: %s carries only the members DOMAIN §4-§5 define for it", [_shown_member(parent, key, path), parent])}

_sections := ["subject", "record"]

_all_sections := ["subject", "record", "consent"]

# The fields of each section that are present.
_present := {"subject": lib.subject_fields, "record": lib.record_fields}

# The removed fields of each section: those not on the allow-list, those on
# it whose condition is not met (_blocked), and those that a rule of its own
# removes even from the allow-list (_barred).
_removed := {section: fields |
	some section in _sections
	present := _present[section]
	fields := ((present - _allowed[section]) | _blocked[section]) | (present & _barred[section])
}

# The one reason of a removed path, from the most specific rule.
_why(section, field, path) := _why_barred(section, field, path) if {
	field in _barred[section]
} else := {"rule": "R11", "message": sprintf("removed %s: a verification answer carries only assertions, never the registry record", [path])} if {
	lib.type == "identity.verification.response"
} else := {"rule": "R10", "message": sprintf("removed %s (%s): not on the allow-list of %s", [path, _level(section, field), _list_name])}

_why_barred(section, field, path) := {"rule": "R8", "message": sprintf("removed %s (L4): protection data is never sent for %s", [path, lib.purpose])} if {
	field in _levels.L4[section]
	lib.purpose in cfg.l4.never_purposes
} else := {"rule": "R6", "message": sprintf("removed %s: a child's biometrics never reach a law-enforcement, border-management or prosecution recipient", [path])} if {
	_is_biometrics(section, field)
	children.biometrics_barred
} else := {"rule": "R12", "message": sprintf("removed %s: biometrics only for identity-verification requests in 1:1 mode with a dpia_id", [path])} if {
	_is_biometrics(section, field)
	not _biometrics_ok
} else := {"rule": "R10", "message": sprintf("removed %s (L4): L4 sections go only to %s recipients of %s", [path, concat(", ", cfg.l4.recipient_roles), concat(", ", cfg.l4.purposes)])} if {
	field in _levels.L4[section]
	not _l4_ok
} else := {"rule": "R15", "message": sprintf("removed %s: it answers an assertion the request did not ask", [path])} if {
	section == "record"
	field in response.unasked_fields
}

_is_biometrics(section, field) if {
	field == "biometrics"
	section == "subject"
}

# --- allow-lists ------------------------------------------------------------

# The allow-list entry of the purpose and message type, as sets of field
# names: {"subject", "record", "when", and "child" when the purpose narrows
# its list for children}.
_entry := _lists[lib.purpose][lib.type]

# A purpose may narrow its allow-list for children (repatriation-logistics:
# document fields only).
allow_list := _entry.child if {
	_entry.child
	age.child_in_message
} else := _entry

_list_name := sprintf("%s (%s, child)", [lib.purpose, lib.type]) if {
	_entry.child
	age.child_in_message
} else := sprintf("%s (%s)", [lib.purpose, lib.type]) if {
	_entry
} else := "any purpose for this message type"

# (an absent allow-list allows nothing)
default _allowed := {"subject": set(), "record": set()}

_allowed := allow_list

# The listed fields present whose condition (data: when) is not met.
_blocked := {section: {field |
	some field, cond in _entry.when[section]
	field in _present[section]
	field in allow_list[section]
	cond
	not object.get(lib.msg, split(cond.path, "."), null) in cond.in
} |
	some section in _sections
}

# --- what a rule of its own removes even from the allow-list ---------------

# Per section: L4 sections (R8, R10), the subject's biometrics (R6, R12) and
# the record fields that answer an assertion the request did not ask (R15).
_barred := {
	"subject": (_l4_barred.subject | _bio_barred),
	"record": (_l4_barred.record | response.unasked_fields),
}

# L4 sections go only to the L4 purposes and recipient roles, and never for
# some purposes.
_l4_barred := {"subject": set(), "record": set()} if {
	_l4_ok
	not lib.purpose in cfg.l4.never_purposes
} else := _l4_fields

_l4_ok if {
	lib.purpose in cfg.l4.purposes
	some role in cfg.l4.recipient_roles
	role in lib.recipient_roles
}

# A child's biometrics never reach some recipients; biometrics pass only
# under the purposes, message types and mode of the data.
_bio_barred := {"biometrics"} if {
	"biometrics" in _present.subject
	_bio_removed
} else := set()

_bio_removed if children.biometrics_barred

_bio_removed if not _biometrics_ok

_bio := lib.subject.biometrics

_biometrics_ok if {
	lib.purpose in cfg.biometrics.purposes
	lib.type in cfg.biometrics.types
	_bio.mode == cfg.biometrics.mode
	is_string(_bio.dpia_id)
	_bio.dpia_id != ""
}

# --- nested members (DOMAIN §4 structured fields, §5 consent) -------------

# parent path -> the member names it may carry: data members, with the
# allow-list entry's own consent list in place of members.consent when it
# has one.
_member_lists := object.union(_members, {"consent": _entry.consent}) if {
	_entry.consent
} else := _members

# The member names of an object, or of every object in an array.
_member_names(v) := object.keys(v) if is_object(v)

_member_names(v) := {k | some e in v; is_object(e); some k, _ in e} if is_array(v)

# _shown(section, field, path): the path when the data knows the field,
# else the words the reason uses instead.
_shown(section, field, path) := path if {
	field in _known[section]
} else := sprintf("an unlisted field of %s", [section])

_shown_member(parent, key, path) := path if {
	key in _member_lists_all[parent]
} else := sprintf("an unlisted member of %s", [parent])

# --- data category of a path, for the reason sentence ---------------------

_level(section, field) := "L3: a child's core identity" if {
	_levels_of[section][field] == "L2"
	age.child_in_message
} else := object.get(_levels_of[section], field, "unlisted field")

# --- views of the data (no input: computed once per policy version) -------

# purpose -> message type -> the entry's field sets.
_lists := {purpose: {type: _entry_sets(e) | some type, e in types; e} | some purpose, types in cfg.allow_lists}

_entry_sets(e) := object.union(_section_sets(e), {"child": _section_sets(e.child), "when": _when(e)}) if {
	e.child
} else := object.union(_section_sets(e), {"when": _when(e)})

_when(e) := _by_field(e.when) if {
	e.when
} else := {}

_section_sets(e) := {section: {f | some f in e[section]} | some section in _all_sections; e[section]}

# _by_field(obj): {path: value} as {section: {field: value}}.
_by_field(obj) := {section: {substring(path, count(section) + 1, -1): value |
	some path, value in obj
	is_string(path)
	startswith(path, concat("", [section, "."]))
} |
	some section in _sections
}

# level -> section -> field names.
_levels := {level: {section: {substring(path, count(section) + 1, -1) |
	some path in paths
	is_string(path)
	startswith(path, concat("", [section, "."]))
} |
	some section in _sections
} |
	some level, paths in cfg.levels
}

# section -> field -> the first of L4, L3, L2 that lists it.
_levels_of := {section: {field: level |
	some field in _leveled(section)
	level := _first_level(section, field)
} |
	some section in _sections
}

_first_level(section, field) := "L4" if {
	field in _levels.L4[section]
} else := "L3" if {
	field in _levels.L3[section]
} else := "L2" if {
	field in _levels.L2[section]
}

# The L4 fields of each section.
_l4_fields := {section: _levels_or_none("L4", section) | some section in _sections}

_levels_or_none(level, section) := s if {
	s := _levels[level][section]
} else := set()

_top_level := {key | some key in cfg.top_level_fields}

# parent path -> set of member names (data members).
_members := {parent: {m | some m in names} | some parent, names in cfg.members}

# Every member name the data knows for a parent (for reason sentences).
_member_lists_all := _members

# section -> every field name the data knows in it: the allow-lists and the
# levels (a field the data names may be named in a reason).
_known := {section: (_listed(section) | _leveled(section)) | some section in _sections}

_listed(section) := {f |
	some types in cfg.allow_lists
	some e in types
	some list in [e, object.get(e, "child", {})]
	some f in object.get(list, section, [])
}

_leveled(section) := {f |
	some level in _levels
	some f in object.get(level, section, set())
}

# --- shapes (DOMAIN §4-§5) ---------------------------------------------------

# A field that passes carries only the form DOMAIN §4-§5 gives it (data:
# shapes): a string, a list of strings, a number, a boolean, an object (its
# members: above) or a list of objects. Anything else is removed and listed
# (R10), so that an allowed field cannot carry other content inside it (a
# protection section hidden in requested_assertions, say). The members of a
# structured field are checked too, in the object or in every object of the
# list, whatever the form of the field itself.
#
# The forms are checked in one pass over the message, by a JSON Schema built
# from the data (_forms, computed once per policy version). Each value out of
# its form is reported by its path, with the index of a list element in it
# ("subject.documents.1.code"); only the fields and members that pass are
# listed, as the others are removed anyway.
removals[path] := _wrong_form(path) if {
	some e in _form_errors
	e.type == "invalid_type"
	path := _form_path(split(e.field, "."))
}

# What the schema of the forms reports of the message.
_form_errors := errors if [_, errors] := json.match_schema(lib.msg, _forms)

_wrong_form(path) := {"rule": "R10", "message": sprintf("removed %s: it is not of the form DOMAIN §4-§5 gives it", [path])}

# The path a form error removes: a field of a section (the field itself, or
# an element of its list), or a member of a structured field (in the object,
# or in an element of the list); only what is kept.
_form_path([section, field]) := concat(".", [section, field]) if field in _kept[section]

_form_path([section, field, x]) := concat(".", [section, field]) if {
	field in _kept[section]
	is_array(lib.msg[section][field])
} else := concat(".", [section, field, x]) if {
	field in _kept[section]
	x in _member_lists[concat(".", [section, field])]
}

_form_path([section, field, _, member]) := concat(".", [section, field, member]) if {
	field in _kept[section]
	member in _member_lists[concat(".", [section, field])]
}

# The fields of each section, and the members of consent, that reach the
# recipient as far as their names go.
_kept := {
	"subject": _present.subject - object.get(_removed, "subject", set()),
	"record": _present.record - object.get(_removed, "record", set()),
	"consent": object.keys(lib.consent) & _member_lists.consent,
}

# The JSON Schema of the forms: for each section, its fields with their
# forms and the forms of their members. A section that is not an object is
# not checked here (it is removed whole). A field's form and its members'
# forms are two schemas of an allOf, because JSON Schema checks nothing
# inside a value of the wrong type; allOf also reports that one of them
# failed (an error of its own type, which removals ignores).
_forms := {"properties": {section: {"properties": _section_forms(section)} | some section in _all_sections}}

_section_forms(section) := {field: {"allOf": [
	_form(object.get(cfg.shapes, parent, null)),
	_members_form(object.get(_member_forms, parent, {})),
	_member_list_form(parent),
]} |
	some field in _form_fields[section]
	parent := concat(".", [section, field])
}

# section -> the fields that have a form, members with forms, or a list of
# members.
_form_fields := {section: {field |
	some path in (object.keys(cfg.shapes) | object.keys(cfg.members))
	[section, field] = array.slice(split(path, "."), 0, 2)
} |
	some section in _all_sections
}

# A structured field with a list of members (data: members) carries no
# other, in the object or in any element of the list.
_member_list_form(parent) := {"properties": m, "additionalProperties": false, "items": {"properties": m, "additionalProperties": false}} if {
	m := {member: {} | some member in cfg.members[parent]}
} else := {}

# "section.field" -> member -> the member's form.
_member_forms := {parent: {member: _form(shape) |
	some path, shape in cfg.shapes
	[section, field, member] = split(path, ".")
	parent == concat(".", [section, field])
} |
	some path0, _ in cfg.shapes
	[section0, field0, _] = split(path0, ".")
	parent := concat(".", [section0, field0])
}

# The forms of the members of a structured field apply in the object and in
# every element of a list (JSON Schema applies "properties" to objects and
# "items" to lists only).
_members_form(members) := {"properties": members, "items": {"properties": members}}

_form("string") := {"type": "string"}

_form("number") := {"type": "number"}

_form("boolean") := {"type": "boolean"}

_form("object") := {"type": "object"}

_form("strings") := {"type": "array", "items": {"type": "string"}}

_form("objects") := {"type": "array", "items": {"type": "object"}}

_form(null) := {}
