package oracle

import (
	"encoding/json"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// facts are what the rules need to know of one input, read once.
type facts struct {
	now        time.Time
	hasNow     bool
	today      time.Time // the UTC date of now
	day        string    // today as YYYY-MM-DD
	purpose    string
	typ        string
	subject    map[string]any
	record     map[string]any
	consent    map[string]any
	isResponse bool

	// R4: the age at now in years (whole years from a date, the number of
	// an estimate), whether it is known, and whether the input was bad.
	birth       time.Time // the latest possible day of a good birth_date
	hasBirth    bool
	estimate    float64
	hasEstimate bool
	age         float64
	ageKnown    bool
	badBirth    bool
	badEstimate bool
	child       bool // under the adult age, or not known to be over it (R4)
}

func (o *Oracle) facts(in policy.Input) *facts {
	f := &facts{}
	if t, err := time.Parse(time.RFC3339, in.Now); err == nil {
		f.now, f.hasNow = t, true
	}
	u := f.now.UTC()
	f.today = time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	f.day = f.today.Format("2006-01-02")
	msg := in.Message
	f.purpose, _ = msg["purpose"].(string)
	f.typ, _ = msg["type"].(string)
	f.subject, _ = msg["subject"].(map[string]any)
	f.record, _ = msg["record"].(map[string]any)
	f.consent, _ = msg["consent"].(map[string]any)
	_, f.isResponse = o.r.responses[f.typ]

	if v, ok := f.subject["birth_date"]; ok {
		if t, good := latestDay(v); good {
			f.birth, f.hasBirth = t, true
		} else {
			f.badBirth = true
		}
	}
	if v, ok := f.subject["age_estimate"]; ok {
		if e, good := estimate(v); good {
			f.estimate, f.hasEstimate = e, true
		} else {
			f.badEstimate = true
		}
	}
	switch {
	case f.hasBirth:
		f.age, f.ageKnown = float64(yearsBetween(f.birth, f.today)), true
	case f.hasEstimate && !f.badBirth:
		f.age, f.ageKnown = f.estimate, true
	}
	f.child = !f.ageKnown || f.badBirth || f.badEstimate || f.age < float64(o.r.thresholds.adult)
	return f
}

// latestDay reads a birth date of DOMAIN.md §4 (YYYY-MM-DD, YYYY-MM or
// YYYY) and returns its latest possible day (R4). Anything else, or a day
// that does not exist, is not a date.
func latestDay(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return len(s) > 0
	}
	var y, m, d int
	switch len(s) {
	case 4:
		if !digits(s) {
			return time.Time{}, false
		}
		y, _ = strconv.Atoi(s)
		m, d = 12, 31
	case 7:
		if s[4] != '-' || !digits(s[:4]) || !digits(s[5:]) {
			return time.Time{}, false
		}
		y, _ = strconv.Atoi(s[:4])
		m, _ = strconv.Atoi(s[5:])
		if m < 1 || m > 12 {
			return time.Time{}, false
		}
		d = time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	case 10:
		if s[4] != '-' || s[7] != '-' || !digits(s[:4]) || !digits(s[5:7]) || !digits(s[8:]) {
			return time.Time{}, false
		}
		y, _ = strconv.Atoi(s[:4])
		m, _ = strconv.Atoi(s[5:7])
		d, _ = strconv.Atoi(s[8:])
		if m < 1 || m > 12 || d < 1 || d > time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if y < 1 {
		return time.Time{}, false
	}
	return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC), true
}

// offenceDay reads record.offence_date, which DOMAIN.md §8 gives as
// YYYY-MM-DD only.
func offenceDay(v any) (time.Time, bool) {
	if s, ok := v.(string); !ok || len(s) != 10 {
		return time.Time{}, false
	}
	return latestDay(v)
}

// yearsBetween returns the whole years from birth to day; a 29 February
// birthday falls on 1 March in other years (the later day: in doubt, a
// child, R4).
func yearsBetween(birth, day time.Time) int {
	y := day.Year() - birth.Year()
	if day.Month() < birth.Month() || (day.Month() == birth.Month() && day.Day() < birth.Day()) {
		y--
	}
	return y
}

// estimate reads age_estimate: a JSON number that is not negative (R4).
func estimate(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		f, err = strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false
		}
	case float64:
		f = x
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false
	}
	return f, true
}

// number reads a JSON number exactly.
func number(v any) (*big.Rat, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = string(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		return new(big.Rat).SetFloat64(x), true
	case int:
		return new(big.Rat).SetInt64(int64(x)), true
	case int64:
		return new(big.Rat).SetInt64(x), true
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// sameValue says whether two JSON scalars are the same value.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	// A side decoded without UseNumber is a float64: compare as float64.
	if fa, ok := a.(float64); ok {
		fb, ok := asFloat(b)
		return ok && fa == fb
	}
	if fb, ok := b.(float64); ok {
		fa, ok := asFloat(a)
		return ok && fa == fb
	}
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			return x.Cmp(y) == 0
		}
	}
	return false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// listHas says whether v is a JSON array holding the string s.
func listHas(v any, s string) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// lookup returns the value at a dotted DOMAIN path of msg.
func lookup(msg map[string]any, path string) (any, bool) {
	var cur any = msg
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// knownNames are the member names DOMAIN.md and PROTOCOL.md give; any other
// name the sender chose is shown as "<unlisted>" (PROTOCOL.md §3.2).
var knownNames = func() set {
	s := set{}
	for _, m := range []set{consentMembers, overrideMembers, valueFields, protocolTopLevel} {
		for k := range m {
			if _, f, ok := strings.Cut(k, "."); ok {
				k = f
			}
			s[k] = true
		}
	}
	for f, members := range structured {
		s[f] = true
		for k := range members {
			s[k] = true
		}
	}
	for _, k := range []string{"health", "legal_status", "allegations", "psychosocial", "gbv", "trafficking", "best_interests", "child_statement", "<invalid>", "<unlisted>"} {
		s[k] = true
	}
	return s
}()

// safePath joins member names with dots, each name DOMAIN does not give
// replaced by "<unlisted>".
func safePath(comps []string) string {
	var b strings.Builder
	for i, c := range comps {
		if i > 0 {
			b.WriteByte('.')
		}
		if knownNames[c] {
			b.WriteString(c)
		} else {
			b.WriteString("<unlisted>")
		}
	}
	return b.String()
}

// safeDotted is safePath for a path given as one dotted string.
func safeDotted(p string) string { return safePath(strings.Split(p, ".")) }

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
