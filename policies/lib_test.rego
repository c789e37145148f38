package xborder.lib_test

import data.xborder.lib

latest_cases := [
	{"note": "full date", "s": "2008-04-30", "want": [2008, 4, 30]},
	{"note": "year counts at 31 December", "s": "2008", "want": [2008, 12, 31]},
	{"note": "month counts at its last day", "s": "2009-04", "want": [2009, 4, 30]},
	{"note": "February of a leap year", "s": "2008-02", "want": [2008, 2, 29]},
	{"note": "February of a common year", "s": "2009-02", "want": [2009, 2, 28]},
	{"note": "February of a century year", "s": "1900-02", "want": [1900, 2, 28]},
	{"note": "February of year 2000", "s": "2000-02", "want": [2000, 2, 29]},
]

test_latest[tc.note] if {
	some tc in latest_cases
	lib.latest(tc.s) == lib.ordinal(tc.want)
}

earliest_cases := [
	{"note": "full date", "s": "2016-03-01", "want": [2016, 3, 1]},
	{"note": "year counts at 1 January", "s": "2016", "want": [2016, 1, 1]},
	{"note": "month counts at its first day", "s": "2016-03", "want": [2016, 3, 1]},
]

test_earliest[tc.note] if {
	some tc in earliest_cases
	lib.earliest(tc.s) == lib.ordinal(tc.want)
}

invalid_dates := [
	{"note": "30 February", "s": "2008-02-30"},
	{"note": "29 February of a common year", "s": "2009-02-29"},
	{"note": "month 13", "s": "2008-13"},
	{"note": "month 0", "s": "2008-00-10"},
	{"note": "day 0", "s": "2008-01-00"},
	{"note": "two-digit year", "s": "08"},
	{"note": "a number", "s": 2008},
	{"note": "slashes", "s": "2008/01/01"},
	{"note": "year out of range", "s": "0001-01-01"},
	{"note": "null", "s": null},
]

test_invalid_dates_are_undefined[tc.note] if {
	some tc in invalid_dates
	_undefined(tc.s)
}

_undefined(s) if {
	not lib.latest(s)
	not lib.earliest(s)
}

years_cases := [
	{"note": "the birthday itself counts", "a": [2008, 11, 22], "b": [2026, 11, 22], "want": 18},
	{"note": "the day before does not", "a": [2008, 11, 23], "b": [2026, 11, 22], "want": 17},
	{"note": "later month", "a": [2008, 12, 1], "b": [2026, 11, 22], "want": 17},
	{"note": "29 February, on 28 February", "a": [2008, 2, 29], "b": [2026, 2, 28], "want": 17},
	{"note": "29 February, on 1 March", "a": [2008, 2, 29], "b": [2026, 3, 1], "want": 18},
	{"note": "future date", "a": [2027, 1, 1], "b": [2026, 11, 22], "want": -1},
]

test_years_between[tc.note] if {
	some tc in years_cases
	lib.years_between(lib.ordinal(tc.a), lib.ordinal(tc.b)) == tc.want
}

test_years_between_ceil[tc.note] if {
	some tc in [
		{"note": "exact anniversary", "a": [2020, 5, 1], "b": [2026, 5, 1], "want": 6},
		{"note": "one day more rounds up", "a": [2020, 5, 1], "b": [2026, 5, 2], "want": 7},
		{"note": "one day less rounds up", "a": [2020, 5, 2], "b": [2026, 5, 1], "want": 6},
	]
	lib.years_between_ceil(lib.ordinal(tc.a), lib.ordinal(tc.b)) == tc.want
}

rfc3339_cases := [
	{"note": "UTC", "s": "2026-11-22T12:00:00Z", "valid": true},
	{"note": "offset", "s": "2026-11-22T12:00:00+05:00", "valid": true},
	{"note": "fraction", "s": "2026-11-22T12:00:00.123456789Z", "valid": true},
	{"note": "date only", "s": "2026-11-22", "valid": false},
	{"note": "no zone", "s": "2026-11-22T12:00:00", "valid": false},
	{"note": "hour 24", "s": "2026-11-22T24:00:00Z", "valid": false},
	{"note": "second 60", "s": "2026-11-22T12:00:60Z", "valid": false},
	{"note": "31 November", "s": "2026-11-31T12:00:00Z", "valid": false},
	{"note": "offset hour 24", "s": "2026-11-22T12:00:00+24:00", "valid": false},
	{"note": "not a string", "s": 1795348790, "valid": false},
	{"note": "beyond int64 nanoseconds", "s": "2300-01-01T00:00:00Z", "valid": false},
]

test_valid_rfc3339[tc.note] if {
	some tc in rfc3339_cases
	tc.valid == _valid(tc.s)
}

_valid(s) if {
	lib.valid_rfc3339(s)
} else := false

test_today_from_input_now if {
	lib.today == [2026, 11, 22] with input as {"now": "2026-11-22T23:59:59Z"}
	not lib.today with input as {"now": "yesterday"}
}
