# Shared helpers: the message under decision and calendar arithmetic.
#
# Every helper is total and never raises a built-in error: strings are
# validated before they reach a time or number built-in, because the engine
# runs with strict built-in errors and an error is a denial (R1).
package xborder.lib

import data.xborder_data as cfg

# The message, or an empty object when the input carries none.
default msg := {}

msg := input.message if is_object(input.message)

type := msg.type

purpose := msg.purpose

default subject := {}

subject := v if {
	v := msg.subject
	is_object(v)
}

default record := {}

record := v if {
	v := msg.record
	is_object(v)
}

default consent := {}

consent := v if {
	v := msg.consent
	is_object(v)
}

# The member names of subject and record, computed once for the rules
# that ask whether a field is present and for minimisation.
subject_fields := object.keys(subject)

record_fields := object.keys(record)

# A response answers an accepted request (R15); policy data maps each
# response type to the request type it answers.
is_response if cfg.responses[type]

is_withdrawal if type == "consent.withdrawal"

sender_roles contains role if some role in input.sender.roles

recipient_roles contains role if some role in input.recipient.roles

# --- time ------------------------------------------------------------------

# The decision time in nanoseconds: from input.now only, never from the clock,
# so that a decision can be reproduced.
now_ns := ns(input.now)

# Today's date [y, m, d] in UTC.
today := time.date(now_ns)

# A day is handled as its ordinal, the number yyyymmdd (2026-11-22 is
# 20261122): ordinals order days, and whole years between two days are the
# difference of their ordinals in ten-thousands (years_between).
today_ordinal := to_number(time.format([now_ns, "UTC", "20060102"]))

# ordinal(d): the ordinal of a day [y, m, d].
ordinal(d) := (((d[0] * 100) + d[1]) * 100) + d[2]

# The calendar checks are regular expressions, so that a date costs one
# built-in call rather than a dozen (the policy runs for every message):
# years 1700-2261 (what the time built-ins can represent in int64
# nanoseconds), months 01-12, and days that exist in their month, 29
# February in leap years only.
_year_re := `(?:1[7-9][0-9]{2}|20[0-9]{2}|21[0-9]{2}|22[0-5][0-9]|226[01])`

_month_re := `(?:0[1-9]|1[0-2])`

# The leap years of that range: the multiples of 4 that are not whole
# centuries (1704-2196, 2204-2260), and 2000.
_leap_year_re := `(?:(?:1[7-9]|2[01])(?:0[48]|[2468][048]|[13579][26])|2000|22(?:0[48]|[24][048]|[135][26]|60))`

_ymd_re := concat("", [
	"(?:", _year_re,
	`-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)|`,
	_leap_year_re, "-02-29)",
])

# YYYY-MM-DD, then hours 00-23, minutes and seconds 00-59, an optional
# fraction of up to 9 digits, and Z or an offset of at most 23:59.
_rfc3339 := concat("", ["^", _ymd_re, `T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`])

_date_re := concat("", ["^", _ymd_re, "$"])

_year_only_re := concat("", ["^", _year_re, "$"])

_year_month_re := concat("", ["^", _year_re, "-", _month_re, "$"])

# valid_rfc3339(s) holds when time.parse_rfc3339_ns(s) is safe to call.
valid_rfc3339(s) if {
	is_string(s)
	regex.match(_rfc3339, s)
}

# ns(s): nanoseconds of an RFC 3339 time, undefined when s is not one (the
# check of valid_rfc3339, repeated: every decision calls ns).
ns(s) := time.parse_rfc3339_ns(s) if {
	is_string(s)
	regex.match(_rfc3339, s)
}

_leap(y) if {
	y % 4 == 0
	y % 100 != 0
}

_leap(y) if y % 400 == 0

days_in_month(y, m) := 29 if {
	m == 2
	_leap(y)
} else := 28 if {
	m == 2
} else := 30 if {
	m in {4, 6, 9, 11}
} else := 31

# day(s): the ordinal of a full YYYY-MM-DD date; undefined when invalid.
# (The digits are joined with split and concat: the replace built-in
# prepares a new replacer, some kilobytes, on every call.)
day(s) := to_number(concat("", split(s, "-"))) if {
	is_string(s)
	regex.match(_date_re, s)
}

# latest(s): the ordinal of the latest day a full or partial date ("YYYY",
# "YYYY-MM", "YYYY-MM-DD") can mean (R4: a partial birth date counts at its
# latest possible day, so the subject is the youngest the date allows). The
# three forms exclude each other.
latest(s) := to_number(concat("", split(s, "-"))) if {
	is_string(s)
	regex.match(_date_re, s)
} else := (to_number(s) * 10000) + 1231 if {
	_year_only(s)
} else := (((y * 100) + m) * 100) + days_in_month(y, m) if {
	[y, m] := _ym(s)
}

# earliest(s): the ordinal of the earliest day a full or partial date can
# mean.
earliest(s) := to_number(concat("", split(s, "-"))) if {
	is_string(s)
	regex.match(_date_re, s)
} else := (to_number(s) * 10000) + 101 if {
	_year_only(s)
} else := (((y * 100) + m) * 100) + 1 if {
	[y, m] := _ym(s)
}

_year_only(s) if {
	is_string(s)
	regex.match(_year_only_re, s)
}

_ym(s) := [to_number(substring(s, 0, 4)), to_number(substring(s, 5, 2))] if {
	is_string(s)
	regex.match(_year_month_re, s)
}

# years_between(a, b): whole years from day a to day b, as ordinals (an age:
# the anniversary day itself counts, the day before does not). The month and
# day part of an ordinal is below 10000, so it only decides whether the last
# year is complete. The difference is shifted by 10000 years before it is
# rounded, because the engine's floor and ceil are wrong between -1 and 0.
years_between(a, b) := floor(((b - a) + 100000000) / 10000) - 10000

# years_between_ceil(a, b): years from a to b, rounded up.
years_between_ceil(a, b) := ceil(((b - a) + 100000000) / 10000) - 10000
