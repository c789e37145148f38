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

subject := msg.subject if is_object(msg.subject)

default record := {}

record := msg.record if is_object(msg.record)

default consent := {}

consent := msg.consent if is_object(msg.consent)

# A response answers an accepted request (R15); policy data maps each
# response type to the request type it answers.
is_response if cfg.responses[type]

is_withdrawal if type == "consent.withdrawal"

sender_roles contains role if some role in input.sender.roles

recipient_roles contains role if some role in input.recipient.roles

# --- time ------------------------------------------------------------------

# The decision time in nanoseconds: from input.now only, never from the clock,
# so that a decision can be reproduced.
now_ns := time.parse_rfc3339_ns(input.now) if valid_rfc3339(input.now)

# Today's date [y, m, d] in UTC.
today := [y, m, d] if [y, m, d] := time.date(now_ns)

# ordinal(today), computed once per decision.
today_ordinal := ordinal(today)

# The calendar checks are regular expressions, so that a date costs one
# built-in call rather than a dozen (the policy runs for every message):
# years 1700-2261 (what the time built-ins can represent in int64
# nanoseconds), months 01-12, and days that exist in their month; 29
# February is then checked against the leap years (_feb29_ok).
_year_re := `(?:1[7-9][0-9]{2}|20[0-9]{2}|21[0-9]{2}|22[0-5][0-9]|226[01])`

_month_re := `(?:0[1-9]|1[0-2])`

_month_day_re := `(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31|02-29)`

# YYYY-MM-DD, then hours 00-23, minutes and seconds 00-59, an optional
# fraction of up to 9 digits, and Z or an offset of at most 23:59.
_rfc3339 := concat("", ["^", _year_re, "-", _month_day_re, `T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$`])

_date_re := concat("", ["^", _year_re, "-", _month_day_re, "$"])

_year_only_re := concat("", ["^", _year_re, "$"])

_year_month_re := concat("", ["^", _year_re, "-", _month_re, "$"])

# valid_rfc3339(s) holds when time.parse_rfc3339_ns(s) is safe to call.
valid_rfc3339(s) if {
	is_string(s)
	regex.match(_rfc3339, s)
	_feb29_ok(substring(s, 0, 10))
}

# ns(s): nanoseconds of an RFC 3339 time, undefined when s is not one.
ns(s) := time.parse_rfc3339_ns(s) if valid_rfc3339(s)

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

# _feb29_ok(ymd): a YYYY-MM-DD that is not 29 February, or is one of a leap
# year.
_feb29_ok(ymd) if not endswith(ymd, "-02-29")

_feb29_ok(ymd) if {
	endswith(ymd, "-02-29")
	_leap(to_number(substring(ymd, 0, 4)))
}

_valid_ymd(s) if {
	regex.match(_date_re, s)
	_feb29_ok(s)
}

_ymd(s) := [to_number(substring(s, 0, 4)), to_number(substring(s, 5, 2)), to_number(substring(s, 8, 2))]

# day(s): [y, m, d] of a full YYYY-MM-DD date; undefined when invalid.
day(s) := _ymd(s) if {
	is_string(s)
	_valid_ymd(s)
}

# latest(s): the latest day a full or partial date ("YYYY", "YYYY-MM",
# "YYYY-MM-DD") can mean (R4: a partial birth date counts at its latest
# possible day, so the subject is the youngest the date allows). The three
# forms exclude each other.
latest(s) := d if {
	d := day(s)
} else := [to_number(s), 12, 31] if {
	_year_only(s)
} else := [y, m, days_in_month(y, m)] if {
	[y, m] := _ym(s)
}

# earliest(s): the earliest day a full or partial date can mean.
earliest(s) := d if {
	d := day(s)
} else := [to_number(s), 1, 1] if {
	_year_only(s)
} else := [y, m, 1] if {
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

# ordinal(d) orders days: ordinal(a) < ordinal(b) when a is before b.
ordinal(d) := (((d[0] * 100) + d[1]) * 100) + d[2]

# years_between(a, b): whole years from day a to day b (an age: the
# anniversary day itself counts, the day before does not).
years_between(a, b) := (b[0] - a[0]) - 1 if {
	(b[1] * 100) + b[2] < (a[1] * 100) + a[2]
} else := b[0] - a[0]

# years_between_ceil(a, b): years from a to b, rounded up.
years_between_ceil(a, b) := n if {
	n := years_between(a, b)
	_same_anniversary(a, b)
} else := years_between(a, b) + 1

_same_anniversary(a, b) if {
	a[1] == b[1]
	a[2] == b[2]
}
