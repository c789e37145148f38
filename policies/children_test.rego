package xborder.children_test

import data.xborder.children
import data.xborder.fixtures_test as fx

_rules(set) := {r.rule | some r in set}

_screen(subject) := object.union(json.remove(fx.screening, ["message/subject/birth_date"]), {"message": {"subject": subject}})

# R6 border screening, by the age the subject shows.
screening_cases := [
	{"note": "adult", "input": fx.screening, "denied": false},
	{"note": "exactly 18 today", "input": _screen({"birth_date": "2008-11-22"}), "denied": false},
	{"note": "18 tomorrow", "input": _screen({"birth_date": "2008-11-23"}), "denied": true},
	{"note": "year only: 2008 counts at 31 December", "input": _screen({"birth_date": "2008"}), "denied": true},
	{"note": "unknown age", "input": _screen({}), "denied": true},
	{"note": "estimate 16", "input": _screen({"age_estimate": 16}), "denied": true},
	{"note": "a ref-only response is not presumed a child", "input": _screening_answer({"ref": "S-1"}), "denied": false},
	{"note": "a response that shows a child", "input": _screening_answer({"ref": "S-1", "birth_date": "2015-01-01"}), "denied": true},
	{"note": "other purposes are not screening", "input": fx.verification, "denied": false},
]

_screening_answer(subject) := object.union(fx.answer, {
	"message": {"purpose": "border-screening", "subject": subject, "from": "UZ-MVD", "to": "KZ-MVD"},
	"sender": fx.uzmvd,
	"recipient": fx.mvd,
	"request": {"purpose": "border-screening", "from": "KZ-MVD", "to": "UZ-MVD"},
})

test_screening[tc.note] if {
	some tc in screening_cases
	tc.denied == _denies("R6") with input as tc.input
}

_denies(rule) if {
	rule in _rules(children.deny)
} else := false

# R6 biometrics of a child towards law enforcement, border management or
# prosecution (removed in minimise.rego).
test_biometrics_barred[tc.note] if {
	some tc in [
		{"note": "civil registry only", "roles": ["civil-registry"], "barred": false},
		{"note": "civil registry and law enforcement", "roles": ["civil-registry", "law-enforcement"], "barred": true},
		{"note": "prosecution", "roles": ["prosecution"], "barred": true},
		{"note": "border management", "roles": ["border-management"], "barred": true},
	]
	tc.barred == _barred with input as object.union(fx.verification, {"recipient": {"roles": tc.roles}})
}

_barred if {
	children.biometrics_barred
} else := false

test_adult_biometrics_not_barred if {
	inp := object.union(fx.verification, {"recipient": {"roles": ["law-enforcement"]}, "message": {"subject": {"birth_date": "1990-01-01"}}})
	not children.biometrics_barred with input as inp
}

# R7 at now = 2026-11-22, sender KZ (minimum age 14 by default).
r7_cases := [
	{"note": "adult at the conduct, to the prosecutor", "input": fx.prosecution, "denied": false},
	{"note": "13 at the conduct (s09)", "input": fx.prosecution_aged("2012-01-01", "2025-06-01"), "denied": true},
	{"note": "14 on the day of the conduct, to the prosecutor", "input": fx.prosecution_aged("2012-01-01", "2026-01-01"), "denied": true},
	{"note": "14 on the day of the conduct, to child justice", "input": _to_jc(fx.prosecution_aged("2012-01-01", "2026-01-01")), "denied": false},
	{"note": "13 the day before the 14th birthday, to child justice", "input": _to_jc(fx.prosecution_aged("2012-01-02", "2026-01-01")), "denied": true},
	{"note": "16 at the conduct, to the prosecutor (s10)", "input": fx.prosecution_aged("2010-03-01", "2026-05-01"), "denied": true},
	{"note": "16 at the conduct, adult now, to the prosecutor", "input": fx.prosecution_aged("2000-03-01", "2016-05-01"), "denied": true},
	{"note": "17 at the conduct, adult now, to child justice", "input": _to_jc(fx.prosecution_aged("1999-03-01", "2016-05-01")), "denied": false},
	{"note": "partial birth year counts at its latest day", "input": _to_jc(fx.prosecution_aged("2012", "2026-06-01")), "denied": true},
	{"note": "no offence date: age at the decision", "input": _to_jc(json.remove(fx.prosecution_aged("2012-01-01", null), ["message/record/offence_date"])), "denied": false},
	{"note": "invalid offence date", "input": fx.prosecution_aged("1990-01-01", "2016-13-01"), "denied": true},
	{"note": "unknown age", "input": _to_jc(json.remove(fx.prosecution, ["message/subject/birth_date"])), "denied": true},
	{"note": "other purposes", "input": fx.referral, "denied": false},
]

_to_jc(inp) := object.union(inp, {"recipient": fx.jc, "message": {"to": "KZ-JC"}})

test_r7[tc.note] if {
	some tc in r7_cases
	tc.denied == _denies("R7") with input as tc.input
}

test_minimum_age_per_country_is_data if {
	inp := _to_jc(fx.prosecution_aged("2010-01-01", "2025-06-01")) # 15 at the conduct
	not "R7" in _rules(children.deny) with input as inp
	"R7" in _rules(children.deny) with input as inp
		with data.xborder_data.thresholds.criminal_responsibility.by_country as {"KZ": 16}
	"R7" in _rules(children.deny) with input as inp
		with data.xborder_data.thresholds.criminal_responsibility.default as 16
}
