package impact

import (
	"encoding/json"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// AgeOf is the age in whole years a generated or scenario input's subject
// has at its input.now, by birth_date (a partial date at its latest day),
// else age_estimate; ok is false when neither is known or readable. It is
// written from DOMAIN.md R4, not from the Rego.
func AgeOf(in policy.Input) (age int, ok bool) {
	now, err := time.Parse(time.RFC3339, in.Now)
	if err != nil {
		return 0, false
	}
	subj, _ := in.Message["subject"].(map[string]any)
	if bd, _ := subj["birth_date"].(string); bd != "" {
		var born time.Time
		switch len(bd) {
		case 10:
			born, err = time.Parse("2006-01-02", bd)
		case 7:
			born, err = time.Parse("2006-01", bd)
			born = born.AddDate(0, 1, -1)
		case 4:
			born, err = time.Parse("2006", bd)
			born = born.AddDate(1, 0, -1)
		default:
			return 0, false
		}
		if err != nil {
			return 0, false
		}
		age = now.Year() - born.Year()
		if now.Month() < born.Month() || (now.Month() == born.Month() && now.Day() < born.Day()) {
			age--
		}
		return age, true
	}
	switch e := subj["age_estimate"].(type) {
	case float64:
		return int(e), true
	case json.Number:
		f, err := e.Float64()
		return int(f), err == nil
	case int:
		return e, true
	}
	return 0, false
}
