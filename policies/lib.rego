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

_rfc3339 := `^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|[+-]([0-9]{2}):([0-9]{2}))$`

# valid_rfc3339(s) holds when time.parse_rfc3339_ns(s) is safe to call.
valid_rfc3339(s) if {
	is_string(s)
	regex.match(_rfc3339, s)
	_valid_ymd(substring(s, 0, 10))
	to_number(substring(s, 11, 2)) <= 23
	to_number(substring(s, 14, 2)) <= 59
	to_number(substring(s, 17, 2)) <= 59
	_valid_offset(s)
}

_valid_offset(s) if endswith(s, "Z")

_valid_offset(s) if {
	not endswith(s, "Z")
	n := count(s)
	to_number(substring(s, n - 5, 2)) <= 23
	to_number(substring(s, n - 2, 2)) <= 59
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

# The year range time built-ins can represent in int64 nanoseconds.
_year_ok(y) if {
	y >= 1700
	y <= 2261
}

_valid_ymd(s) if {
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`, s)
	[y, m, d] := _ymd(s)
	_year_ok(y)
	m >= 1
	m <= 12
	d >= 1
	d <= days_in_month(y, m)
}

_ymd(s) := [to_number(substring(s, 0, 4)), to_number(substring(s, 5, 2)), to_number(substring(s, 8, 2))]

# day(s): [y, m, d] of a full YYYY-MM-DD date; undefined when invalid.
day(s) := _ymd(s) if {
	is_string(s)
	_valid_ymd(s)
}

# latest(s): the latest day a full or partial date ("YYYY", "YYYY-MM",
# "YYYY-MM-DD") can mean (R4: a partial birth date counts at its latest
# possible day, so the subject is the youngest the date allows).
latest(s) := day(s)

latest(s) := [y, 12, 31] if {
	is_string(s)
	regex.match(`^[0-9]{4}$`, s)
	y := to_number(s)
	_year_ok(y)
}

latest(s) := [y, m, days_in_month(y, m)] if {
	[y, m] := _ym(s)
}

# earliest(s): the earliest day a full or partial date can mean.
earliest(s) := day(s)

earliest(s) := [y, 1, 1] if {
	is_string(s)
	regex.match(`^[0-9]{4}$`, s)
	y := to_number(s)
	_year_ok(y)
}

earliest(s) := [y, m, 1] if {
	[y, m] := _ym(s)
}

_ym(s) := [y, m] if {
	is_string(s)
	regex.match(`^[0-9]{4}-[0-9]{2}$`, s)
	y := to_number(substring(s, 0, 4))
	m := to_number(substring(s, 5, 2))
	_year_ok(y)
	m >= 1
	m <= 12
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
