# R4 presumption of minority and R5 age bands.
#
# The subject is a child if under the adult threshold at the time of the
# decision by subject.birth_date (a partial date counts at its latest possible
# day), by subject.age_estimate when no valid date is known, and also when
# neither is known. Thresholds come from data.xborder_data.thresholds.
# METADATA
# title: R4 presumption of minority, R5 age bands
# custom:
#   rules:
#     R4: [child, known_child, years]
#     R5: [band, assent_required]
package xborder.age

import data.xborder.lib
import data.xborder_data as cfg

_t := cfg.thresholds

# The ordinal of the latest day subject.birth_date can mean.
birth := lib.latest(lib.subject.birth_date)

_estimate := floor(lib.subject.age_estimate) if {
	is_number(lib.subject.age_estimate)
	lib.subject.age_estimate >= 0
}

# --- R4: dates are dates -----------------------------------------------------

# A birth_date that is not a real date in one of the three forms of DOMAIN
# §4, or an age_estimate that is not a non-negative number, is bad input:
# the message is denied (R1), never read as an unknown age.
deny contains {"rule": "R1", "message": "subject.birth_date is not a real date of the form YYYY-MM-DD, YYYY-MM or YYYY"} if {
	"birth_date" in lib.subject_fields
	not birth
}

deny contains {"rule": "R1", "message": "subject.age_estimate is not a non-negative number of years"} if {
	"age_estimate" in lib.subject_fields
	not _estimate_valid
}

_estimate_valid if {
	is_number(lib.subject.age_estimate)
	lib.subject.age_estimate >= 0
}

# years: the subject's age in whole years at the decision; undefined when
# unknown.
years := lib.years_between(birth, lib.today_ordinal) if {
	birth
} else := _estimate

known if years

child if years < _t.adult

child if not known

known_child if years < _t.adult

# child_in_message: the child test for the message at hand. A response
# carries only subject.ref (R11) and answers a request that already passed
# the age rules, so a response is about a child only when it shows it.
child_in_message if {
	not lib.is_response
	child
}

child_in_message if {
	lib.is_response
	known_child
}

# --- age at the time of the conduct (R7) ---------------------------------

offence_date_present if lib.record.offence_date != null

# The day of the conduct (an ordinal): the earliest day record.offence_date
# can mean (the youngest the subject can have been), or today without one.
conduct_day := lib.earliest(lib.record.offence_date) if {
	offence_date_present
} else := lib.today_ordinal if {
	not offence_date_present
}

offence_date_invalid if {
	offence_date_present
	not lib.earliest(lib.record.offence_date)
}

# conduct_years: age at the conduct; by estimate, the estimate minus the
# years elapsed since the conduct, rounded against the subject.
conduct_years := lib.years_between(birth, conduct_day) if {
	birth
} else := _estimate - lib.years_between_ceil(conduct_day, lib.today_ordinal) if {
	_estimate
	conduct_day <= lib.today_ordinal
} else := _estimate if {
	_estimate
}

conduct_known if conduct_years

# --- R5 bands ------------------------------------------------------------

# band: who may consent for the subject, by age (data thresholds).
band := "adult" if {
	years >= _t.adult
} else := "child-only" if {
	years >= _t.child_only_from
} else := "either" if {
	years >= _t.representative_only_under
} else := "representative-only" if {
	known
} else := "unknown"

# With an unknown age, a representative consents and the child assents.
assent_required if not known

assent_required if {
	years >= _t.child_assent_from
	years <= _t.child_assent_to
}

_givers := {
	"unknown": {"representative"},
	"representative-only": {"representative"},
	"either": {"representative", "subject"},
	"child-only": {"subject"},
	"adult": {"subject"},
}

# consent_fits(given_by, child_assent): the consent fits the band (R5).
consent_fits(given_by, child_assent) if {
	given_by in _givers[band]
	_assent_ok(given_by, child_assent)
}

# A representative's consent needs the child's assent where it is required.
_assent_ok(given_by, child_assent) if {
	given_by != "representative"
} else if {
	child_assent == "yes"
} else if {
	not assent_required
}
