package xborder.age_test

import data.xborder.age
import data.xborder.fixtures_test as fx

# R4 presumption of minority, at now = 2026-11-22.
child_cases := [
	{"note": "exactly 18 today is an adult", "subject": {"birth_date": "2008-11-22"}, "child": false},
	{"note": "18 tomorrow is a child", "subject": {"birth_date": "2008-11-23"}, "child": true},
	{"note": "year only counts at 31 December", "subject": {"birth_date": "2008"}, "child": true},
	{"note": "month counts at its last day: November 2008", "subject": {"birth_date": "2008-11"}, "child": true},
	{"note": "month counts at its last day: October 2008", "subject": {"birth_date": "2008-10"}, "child": false},
	{"note": "year 2007 is an adult", "subject": {"birth_date": "2007"}, "child": false},
	{"note": "estimate 17", "subject": {"age_estimate": 17}, "child": true},
	{"note": "estimate 18", "subject": {"age_estimate": 18}, "child": false},
	{"note": "estimate 17.9 counts as 17", "subject": {"age_estimate": 17.9}, "child": true},
	{"note": "date wins over estimate", "subject": {"birth_date": "2015-01-01", "age_estimate": 30}, "child": true},
	{"note": "invalid date falls back to estimate", "subject": {"birth_date": "2008-02-30", "age_estimate": 30}, "child": false},
	{"note": "invalid date without estimate", "subject": {"birth_date": "unknown"}, "child": true},
	{"note": "neither date nor estimate", "subject": {}, "child": true},
	{"note": "negative estimate is no estimate", "subject": {"age_estimate": -3}, "child": true},
	{"note": "estimate as a string is no estimate", "subject": {"age_estimate": "30"}, "child": true},
]

test_child[tc.note] if {
	some tc in child_cases
	tc.child == _child with input as fx.referral_aged(tc.subject)
}

_child if {
	age.child
} else := false

test_adult_threshold_is_data if {
	age.child with input as fx.referral_aged({"birth_date": "2006-01-01"})
		with data.xborder_data.thresholds.adult as 21
	not age.child with input as fx.referral_aged({"birth_date": "2006-01-01"})
}

# R5 bands at their edges (birth dates at now = 2026-11-22).
band_cases := [
	{"note": "5", "birth": "2021-11-22", "band": "representative-only", "assent": false},
	{"note": "6 today", "birth": "2020-11-22", "band": "representative-only", "assent": true},
	{"note": "12", "birth": "2014-01-01", "band": "representative-only", "assent": true},
	{"note": "13 today", "birth": "2013-11-22", "band": "either", "assent": true},
	{"note": "14", "birth": "2012-01-01", "band": "either", "assent": true},
	{"note": "15 today", "birth": "2011-11-22", "band": "child-only", "assent": false},
	{"note": "17", "birth": "2009-01-01", "band": "child-only", "assent": false},
	{"note": "18 today", "birth": "2008-11-22", "band": "adult", "assent": false},
]

test_band[tc.note] if {
	some tc in band_cases
	inp := fx.referral_aged({"birth_date": tc.birth})
	age.band == tc.band with input as inp
	tc.assent == _assent with input as inp
}

_assent if {
	age.assent_required
} else := false

test_unknown_age_band if {
	age.band == "unknown" with input as fx.referral_aged({})
	age.assent_required with input as fx.referral_aged({})
}

fits_cases := [
	{"note": "5: representative without assent", "birth": "2021-11-22", "by": "representative", "assent": "n/a", "fits": true},
	{"note": "5: the child alone", "birth": "2021-11-22", "by": "subject", "assent": "n/a", "fits": false},
	{"note": "6: representative needs assent", "birth": "2020-11-22", "by": "representative", "assent": "n/a", "fits": false},
	{"note": "6: representative with assent", "birth": "2020-11-22", "by": "representative", "assent": "yes", "fits": true},
	{"note": "6: assent refused", "birth": "2020-11-22", "by": "representative", "assent": "no", "fits": false},
	{"note": "12: the child alone", "birth": "2014-01-01", "by": "subject", "assent": "n/a", "fits": false},
	{"note": "13: the child alone", "birth": "2013-11-22", "by": "subject", "assent": "n/a", "fits": true},
	{"note": "13: representative with assent", "birth": "2013-11-22", "by": "representative", "assent": "yes", "fits": true},
	{"note": "14: representative without assent", "birth": "2012-01-01", "by": "representative", "assent": "n/a", "fits": false},
	{"note": "15: representative", "birth": "2011-11-22", "by": "representative", "assent": "yes", "fits": false},
	{"note": "15: the child", "birth": "2011-11-22", "by": "subject", "assent": "n/a", "fits": true},
	{"note": "adult: herself", "birth": "1994-07-03", "by": "subject", "assent": "n/a", "fits": true},
	{"note": "adult: a representative", "birth": "1994-07-03", "by": "representative", "assent": "n/a", "fits": false},
	{"note": "unknown: representative with assent", "birth": null, "by": "representative", "assent": "yes", "fits": true},
	{"note": "unknown: representative without assent", "birth": null, "by": "representative", "assent": "n/a", "fits": false},
	{"note": "unknown: the subject", "birth": null, "by": "subject", "assent": "n/a", "fits": false},
	{"note": "unknown giver", "birth": "1994-07-03", "by": "neighbour", "assent": "n/a", "fits": false},
]

test_consent_fits[tc.note] if {
	some tc in fits_cases
	tc.fits == _fits(tc) with input as fx.referral_aged({"birth_date": tc.birth})
}

_fits(tc) if {
	age.consent_fits(tc.by, tc.assent)
} else := false

conduct_cases := [
	{"note": "offence date", "birth": "2012-01-01", "offence": "2025-06-01", "want": 13},
	{"note": "offence on the 14th birthday", "birth": "2012-01-01", "offence": "2026-01-01", "want": 14},
	{"note": "partial offence date counts at its earliest day", "birth": "2012-01-01", "offence": "2025", "want": 13},
	{"note": "no offence date: age today", "birth": "2012-01-01", "offence": null, "want": 14},
]

test_conduct_years[tc.note] if {
	some tc in conduct_cases
	age.conduct_years == tc.want with input as fx.prosecution_aged(tc.birth, tc.offence)
}

test_conduct_years_by_estimate if {
	inp := json.remove(fx.prosecution_aged(null, "2020-06-01"), ["message/subject/birth_date"])
	est := object.union(inp, {"message": {"subject": {"age_estimate": 20}}})

	# 6 years and 5 months ago: 20 - 7 = 13, rounded against the subject
	age.conduct_years == 13 with input as est
}

# R4 (revision 2): a birth date that is no date, or an estimate that is no
# non-negative number, is bad input and denied (R1), never read as unknown.
date_cases := [
	{"note": "full date", "subject": {"birth_date": "2010-02-03"}, "deny": false},
	{"note": "year and month", "subject": {"birth_date": "2010-02"}, "deny": false},
	{"note": "year", "subject": {"birth_date": "2010"}, "deny": false},
	{"note": "no date and no estimate", "subject": {}, "deny": false},
	{"note": "estimate 0", "subject": {"age_estimate": 0}, "deny": false},
	{"note": "fractional estimate", "subject": {"age_estimate": 7.5}, "deny": false},
	{"note": "29 February of a leap year", "subject": {"birth_date": "2012-02-29"}, "deny": false},
	{"note": "unknown", "subject": {"birth_date": "unknown"}, "deny": true},
	{"note": "month 13", "subject": {"birth_date": "2010-13-01"}, "deny": true},
	{"note": "30 February", "subject": {"birth_date": "2010-02-30"}, "deny": true},
	{"note": "29 February of a common year", "subject": {"birth_date": "2011-02-29"}, "deny": true},
	{"note": "unpadded", "subject": {"birth_date": "2010-2-3"}, "deny": true},
	{"note": "datetime", "subject": {"birth_date": "2010-02-03T00:00:00Z"}, "deny": true},
	{"note": "empty", "subject": {"birth_date": ""}, "deny": true},
	{"note": "leading space", "subject": {"birth_date": " 2010"}, "deny": true},
	{"note": "a number", "subject": {"birth_date": 2010}, "deny": true},
	{"note": "null", "subject": {"birth_date": null}, "deny": true},
	{"note": "an object", "subject": {"birth_date": {"y": 2010}}, "deny": true},
	{"note": "invalid date with a valid estimate", "subject": {"birth_date": "2008-02-30", "age_estimate": 30}, "deny": true},
	{"note": "negative estimate", "subject": {"age_estimate": -3}, "deny": true},
	{"note": "estimate as a string", "subject": {"age_estimate": "30"}, "deny": true},
	{"note": "estimate null", "subject": {"age_estimate": null}, "deny": true},
]

test_dates_are_dates[tc.note] if {
	some tc in date_cases
	rules := {r.rule | some r in age.deny} with input as fx.referral_aged(tc.subject)
	_r1_iff(tc.deny, rules)
}

_r1_iff(true, rules) if "R1" in rules

_r1_iff(false, rules) if not "R1" in rules

test_bad_date_reason_names_the_field_not_the_value if {
	rs := age.deny with input as fx.referral_aged({"birth_date": "ABENOVA"})
	some r in rs
	contains(r.message, "subject.birth_date")
	not contains(r.message, "ABENOVA")
}
