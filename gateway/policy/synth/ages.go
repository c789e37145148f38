package synth

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// age is what a case says of the subject's age: the members it writes and
// the whole years at Now as R4 and R5 read them (-1 when unknown).
type age struct {
	band     string
	birth    any
	hasBirth bool
	est      any
	hasEst   bool
	years    int
	bad      bool
}

// band makes one age case.
type band struct {
	name string
	bad  bool
	make func(g *Generator) age
}

// ageOn returns the whole years from birth to day; a 29 February birthday
// falls on 1 March in other years (in doubt, a child: R4).
func ageOn(birth, day time.Time) int {
	y := day.Year() - birth.Year()
	if day.Month() < birth.Month() || (day.Month() == birth.Month() && day.Day() < birth.Day()) {
		y--
	}
	return y
}

func ymd(t time.Time) string { return t.Format("2006-01-02") }

// thresholdAges are the ages where a rule changes: assent from, either
// consents from, criminal responsibility, only the child from, adult.
func (s *Spec) thresholdAges() []int {
	t := s.Thresholds
	ages := []int{t.ChildAssentFrom, t.RepresentativeOnlyUnder, t.ChildAssentTo, t.ChildOnlyFrom, t.Adult, t.CriminalResponsibility}
	for _, a := range t.CriminalByCountry {
		ages = append(ages, a)
	}
	slices.Sort(ages)
	ages = slices.Compact(ages)
	return slices.DeleteFunc(ages, func(a int) bool { return a <= 0 })
}

var estimates = []string{"0", "5", "5.9", "6", "12", "12.9", "13", "14", "14.5", "15", "17", "17.9", "18", "19", "30"}

// bands lists the age cases: whole ages 0–25 by a full date, the day of
// each threshold birthday and the day before it, partial dates that
// straddle a threshold, estimates only, and nothing known (R4, R5, R7);
// then the bad inputs R4 says are denied, and odd but valid estimates.
// A band draws from the generator only when a case uses it, so building
// them draws nothing; their order matters all the same, since a case picks
// a band by its index.
func (g *Generator) buildBands() {
	today := g.today
	g.bands = append(g.bands, wholeAgeBands(today)...)
	for _, t := range g.spec.thresholdAges() {
		g.bands = append(g.bands, thresholdBands(t, today)...)
	}
	g.bands = append(g.bands, estimateBands()...)
	g.bands = append(g.bands, unknownBand(), leapDayBand(today))
	g.bands = append(g.bands, oddEstimateBands()...)
	g.bands = append(g.bands, badDateBands()...)
	g.bands = append(g.bands, badEstimateBands(today)...)
	for i, b := range g.bands {
		if b.bad {
			g.badBands = append(g.badBands, i)
		} else {
			g.goodBands = append(g.goodBands, i)
		}
	}
}

// fullDateBand is a band whose subject was born on one given day.
func fullDateBand(name string, birth, today time.Time) band {
	return band{name: name, make: func(g *Generator) age {
		return age{band: name, birth: ymd(birth), hasBirth: true, years: ageOn(birth, today)}
	}}
}

// wholeAgeBands are the ages 0 to 25, each born on a day drawn among those
// that give that age today.
func wholeAgeBands(today time.Time) []band {
	var out []band
	for n := 0; n <= 25; n++ {
		name := "age:" + strconv.Itoa(n)
		out = append(out, band{name: name, make: func(g *Generator) age {
			lo := today.AddDate(-(n + 1), 0, 1)
			hi := today.AddDate(-n, 0, 0)
			days := int(hi.Sub(lo).Hours()/24) + 1
			b := lo.AddDate(0, 0, g.r.IntN(days))
			return age{band: name, birth: ymd(b), hasBirth: true, years: ageOn(b, today)}
		}})
	}
	return out
}

// thresholdBands are the cases about the threshold age t, where an off by
// one day hides: born t years ago today and tomorrow, a birth year alone
// that straddles it, and a birth month that straddles it or is just past.
// A partial date is read at its last day, the youngest the subject can be.
func thresholdBands(t int, today time.Time) []band {
	ts := strconv.Itoa(t)
	out := []band{
		fullDateBand("edge:"+ts+"-today", today.AddDate(-t, 0, 0), today),
		fullDateBand("edge:"+ts+"-tomorrow", today.AddDate(-t, 0, 1), today),
	}
	y := today.Year() - t
	ylast := time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC)
	out = append(out, band{name: "year:" + ts + "-straddle", make: func(g *Generator) age {
		return age{band: "year:" + ts + "-straddle", birth: strconv.Itoa(y), hasBirth: true, years: ageOn(ylast, today)}
	}})
	m := today.AddDate(-t, 0, 0)
	first := time.Date(m.Year(), m.Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, v := range []struct {
		name  string
		first time.Time
	}{{"month:" + ts + "-straddle", first}, {"month:" + ts + "-past", first.AddDate(0, -1, 0)}} {
		last := v.first.AddDate(0, 1, -1)
		name := v.name
		val := v.first.Format("2006-01")
		out = append(out, band{name: name, make: func(g *Generator) age {
			return age{band: name, birth: val, hasBirth: true, years: ageOn(last, today)}
		}})
	}
	return out
}

// estimateBands give an age_estimate alone; R4 and R5 read its whole years.
func estimateBands() []band {
	var out []band
	for _, e := range estimates {
		name := "est:" + e
		years, _ := strconv.ParseFloat(e, 64)
		out = append(out, band{name: name, make: func(g *Generator) age {
			return age{band: name, est: json.Number(e), hasEst: true, years: int(years)}
		}})
	}
	return out
}

// unknownBand says nothing of the age.
func unknownBand() band {
	return band{name: "unknown", make: func(g *Generator) age { return age{band: "unknown", years: -1} }}
}

// leapDayBand is a subject born on 29 February.
func leapDayBand(today time.Time) band {
	return band{name: "leap-day", make: func(g *Generator) age {
		// The latest 29 February at least 17 years back: whether the
		// subject is 18 on 28 February is the doubt R4 resolves.
		y := today.Year() - 17
		for !isLeap(y) {
			y--
		}
		b := time.Date(y, 2, 29, 0, 0, 0, 0, time.UTC)
		return age{band: "leap-day", birth: ymd(b), hasBirth: true, years: ageOn(b, today)}
	}}
}

// oddEstimateBands are estimates that are valid numbers yet written in an
// unusual way, which a reader must not take for bad input.
func oddEstimateBands() []band {
	odd := []struct{ name, v string }{
		{"est-odd:huge", "1000000"}, {"est-odd:exponent", "1.2e1"}, {"est-odd:fraction", "12.75"},
		{"est-odd:minus-zero", "-0"}, {"est-odd:zero-point", "0.0"},
	}
	var out []band
	for _, o := range odd {
		name, v := o.name, o.v
		f, _ := strconv.ParseFloat(v, 64)
		out = append(out, band{name: name, make: func(g *Generator) age {
			return age{band: name, est: json.Number(v), hasEst: true, years: int(f)}
		}})
	}
	return out
}

// badDateBands are birth dates R4 denies, now and then beside a plausible
// estimate, which must not make the date acceptable.
func badDateBands() []band {
	badDates := []struct {
		name string
		v    any
	}{
		{"bad-date:unknown", "unknown"}, {"bad-date:month-13", "2010-13-01"}, {"bad-date:feb-30", "2010-02-30"},
		{"bad-date:no-padding", "2010-2-3"}, {"bad-date:datetime", "2010-02-03T00:00:00Z"}, {"bad-date:empty", ""},
		{"bad-date:number", json.Number("2010")}, {"bad-date:leading-space", " 2010"}, {"bad-date:month-00", "2010-00"},
		{"bad-date:compact", "20100203"}, {"bad-date:slashes", "2010/02/03"}, {"bad-date:null", nil},
		{"bad-date:object", map[string]any{"year": json.Number("2010")}}, {"bad-date:trailing-space", "2010-02-03 "},
		{"bad-date:arabic-digits", "٢٠١٠"}, {"bad-date:not-leap", "2009-02-29"}, {"bad-date:day-00", "2010-02-00"},
		{"bad-date:array", []any{"2010"}}, {"bad-date:bool", false},
	}
	var out []band
	for _, d := range badDates {
		name, v := d.name, d.v
		out = append(out, band{name: name, bad: true, make: func(g *Generator) age {
			a := age{band: name, birth: CloneValue(v), hasBirth: true, years: -1, bad: true}
			if g.r.IntN(3) == 0 { // a plausible estimate beside it changes nothing
				a.est, a.hasEst = json.Number("30"), true
			}
			return a
		}})
	}
	return out
}

// badEstimateBands are age estimates R4 denies, now and then beside a
// good birth date, which must not make the estimate acceptable.
func badEstimateBands(today time.Time) []band {
	badEst := []struct {
		name string
		v    any
	}{
		{"bad-est:negative", json.Number("-1")}, {"bad-est:negative-fraction", json.Number("-0.5")},
		{"bad-est:numeric-string", "17"}, {"bad-est:word", "seventeen"}, {"bad-est:null", nil},
		{"bad-est:bool", true}, {"bad-est:array", []any{json.Number("17")}}, {"bad-est:object", map[string]any{"min": json.Number("16")}},
		{"bad-est:empty", ""},
	}
	var out []band
	for _, d := range badEst {
		name, v := d.name, d.v
		out = append(out, band{name: name, bad: true, make: func(g *Generator) age {
			a := age{band: name, est: CloneValue(v), hasEst: true, years: -1, bad: true}
			if g.r.IntN(3) == 0 { // a good date beside it: R4 still calls the estimate bad
				b := today.AddDate(-30, 0, 0)
				a.birth, a.hasBirth = ymd(b), true
			}
			return a
		}})
	}
	return out
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// AgeBands lists the age cases a generator for spec makes, good and bad.
func AgeBands(spec *Spec) []string {
	g := New(1, spec, DemoFederation(), Options{})
	out := make([]string, len(g.bands))
	for i, b := range g.bands {
		out[i] = b.name
	}
	return out
}

// CloneValue copies a JSON value so that no two messages share a map.
func CloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = CloneValue(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = CloneValue(e)
		}
		return a
	}
	return v
}
