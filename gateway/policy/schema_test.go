package policy_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xborder/xborder/gateway/policy"
)

func TestCompileRefusesDataOutsideTheSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, old, new string
		field          string
	}{
		{"age as a string", `"adult": 18`, `"adult": "18"`, "xborder_data.thresholds.adult"},
		{"misspelt agreement field", `"valid_until": "2030-12-31"`, `"valid_untill": "2030-12-31"`, "xborder_data.agreements.0"},
		{"not a day", `"valid_from": "2019-01-01"`, `"valid_from": "2019-13-01"`, "xborder_data.agreements.0.valid_from"},
		{"unknown role", `"recipients": ["civil-registry"]`, `"recipients": ["civil-registy"]`, "xborder_data.purposes.identity-verification.recipients.0"},
		{"negative retention", `"border-screening": 30`, `"border-screening": -30`, "xborder_data.retention_days.border-screening"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := policyFiles(t)
			files["data.json"] = &fstest.MapFile{Data: mustRead(t, "data.json", tc.old, tc.new)}
			_, err := policy.Compile(context.Background(), files, policy.Options{Logger: quiet})
			var se *policy.SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("Compile: %v, want a schema error", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestDataSchemaAcceptsTheShippedData(t *testing.T) {
	t.Parallel()
	embedded(t) // compiles, schema included
	if len(policy.DataSchema()) == 0 {
		t.Fatal("no schema")
	}
}

func TestOnChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, err := policy.NewEngine(ctx, tinyPolicy("10", "1"), policy.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		old, new string
		err      error
	}
	var calls []call
	e.OnChange(func(old, new *policy.Bundle, err error) {
		c := call{old: old.Version, err: err}
		if new != nil {
			c.new = new.Version
		}
		calls = append(calls, c)
	})
	v0 := e.Current().Version

	bad := tinyPolicy("0", "1") // its own test fails
	badVersion, _ := policy.Digest(bad)
	if err := e.Reload(ctx, bad); err == nil {
		t.Fatal("accepted")
	}
	if err := e.Reload(ctx, tinyPolicy("20", "1")); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 {
		t.Fatalf("calls = %+v", calls)
	}
	var refused *policy.RefusedError
	if c := calls[0]; c.old != v0 || c.new != "" || !errors.As(c.err, &refused) || refused.Version != badVersion || refused.At.IsZero() {
		t.Errorf("refusal: %+v (refused %+v)", c, refused)
	}
	if st := e.Status(); st.LastRefusedVersion != "" && st.LastError != "" {
		t.Errorf("status after a good reload: %+v", st)
	}
	if c := calls[1]; c.old != v0 || c.new != e.Current().Version || c.err != nil {
		t.Errorf("acceptance: %+v", c)
	}
}

func TestRuleMapCoversEveryRule(t *testing.T) {
	t.Parallel()
	refs, err := embedded(t).RuleMap()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range refs {
		if r.Module == "" || len(r.Entries) == 0 {
			t.Errorf("incomplete %+v", r)
		}
		seen[r.Rule] = true
	}
	for i := 1; i <= 16; i++ {
		if id := "R" + strconv.Itoa(i); !seen[id] {
			t.Errorf("%s is in no module's # METADATA custom.rules", id)
		}
	}
}
