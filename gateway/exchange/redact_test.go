package exchange_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/policy"
)

func TestRedact(t *testing.T) {
	const in = `{"id":"1","subject":{"ref":"S","names":{"primary":"P","original_script":"O"},"biometrics":{"mode":"1:1"}},"record":{"notes":"n","gbv":{"x":1}}}`
	cases := []struct {
		name  string
		paths []string
		want  string
	}{
		{"nothing", nil, in},
		{"one section", []string{"subject.biometrics"}, `{"id":"1","subject":{"ref":"S","names":{"primary":"P","original_script":"O"}},"record":{"notes":"n","gbv":{"x":1}}}`},
		{"two maps", []string{"subject.biometrics", "record.gbv"}, `{"id":"1","subject":{"ref":"S","names":{"primary":"P","original_script":"O"}},"record":{"notes":"n"}}`},
		{"nested", []string{"subject.names.original_script"}, `{"id":"1","subject":{"ref":"S","names":{"primary":"P"},"biometrics":{"mode":"1:1"}},"record":{"notes":"n","gbv":{"x":1}}}`},
		{"absent path", []string{"subject.location", "consent.id", "record.notes.deeper"}, in},
		{"whole section", []string{"record"}, `{"id":"1","subject":{"ref":"S","names":{"primary":"P","original_script":"O"},"biometrics":{"mode":"1:1"}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var msg map[string]any
			if err := json.Unmarshal([]byte(in), &msg); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(exchange.Redact(msg, tc.paths))
			if !jsonEqual(t, string(got), tc.want) {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
			// The input is left as it was.
			after, _ := json.Marshal(msg)
			if !jsonEqual(t, string(after), in) {
				t.Errorf("input modified: %s", after)
			}
		})
	}
}

// Inside an array, a path applies to every object.
func TestRedactArrays(t *testing.T) {
	const in = `{"subject":{"ref":"S","documents":[{"code":"P","photo":"x"},"text",{"code":"ID"},[{"photo":"y","code":"Z"}]]}}`
	var msg map[string]any
	if err := json.Unmarshal([]byte(in), &msg); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(exchange.Redact(msg, []string{"subject.documents.photo"}))
	want := `{"subject":{"ref":"S","documents":[{"code":"P"},"text",{"code":"ID"},[{"code":"Z"}]]}}`
	if !jsonEqual(t, string(got), want) {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if after, _ := json.Marshal(msg); !jsonEqual(t, string(after), in) {
		t.Errorf("input modified: %s", after)
	}
}

func TestCheckDelivered(t *testing.T) {
	const in = `{"id":"1","iat":1,"subject":{"ref":"S","names":{"primary":"P"},"documents":[{"code":"P","photo":"x"}]},"record":{"notes":"n","gbv":{"x":1}},"consent":{"id":"C","extra":1}}`
	var msg map[string]any
	if err := json.Unmarshal([]byte(in), &msg); err != nil {
		t.Fatal(err)
	}
	decode := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		name      string
		delivered string
		redact    []string
		ok        bool
	}{
		{"redacted as decided", `{"id":"1","iat":1,"subject":{"ref":"S","names":{"primary":"P"},"documents":[{"code":"P"}]},"record":{"notes":"n"},"consent":{"id":"C"}}`,
			[]string{"record.gbv", "subject.documents.photo", "consent.extra"}, true},
		{"a removed field is still there", `{"id":"1","subject":{"ref":"S"},"record":{"notes":"n","gbv":{"x":1}}}`, []string{"record.gbv"}, false},
		{"a removed member of an array element is still there", `{"subject":{"ref":"S","documents":[{"code":"P","photo":"x"}]}}`, []string{"subject.documents.photo"}, false},
		{"a removed consent member is still there", `{"consent":{"id":"C","extra":1}}`, []string{"consent.extra"}, false},
		{"something added", `{"subject":{"ref":"S","sex":"F"}}`, nil, false},
		{"a value changed", `{"subject":{"ref":"T"}}`, nil, false},
		{"a top-level value changed", `{"iat":2}`, nil, false},
		{"an unknown top-level member", `{"secret":"x"}`, nil, false},
		{"a type changed", `{"record":{"gbv":"x"}}`, nil, false},
		{"an array grew", `{"subject":{"documents":[{"code":"P"},{"code":"Q"}]}}`, nil, false},
		{"a dotted name posing as a path", `{"subject":{"ref":"S"}}`, []string{"subject.ref"}, false},
		{"nothing at all", `{}`, []string{"record"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := exchange.CheckDelivered(msg, decode(tc.delivered), tc.redact)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckDelivered = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, exchange.ErrNotMinimised) {
				t.Errorf("error %v is not ErrNotMinimised", err)
			}
		})
	}
	// A sender's member name never reaches the error (it is logged).
	err := exchange.CheckDelivered(decode(`{"subject":{"ABENOVA":1}}`), decode(`{"subject":{"ABENOVA":1}}`), []string{"subject.ABENOVA"})
	if err == nil || strings.Contains(err.Error(), "ABENOVA") {
		t.Errorf("error %v", err)
	}
}

// FuzzRedact: whatever the message and the paths, the redacted copy passes
// the independent check (CheckDelivered) whenever every member name is
// valid, the input is never modified, and no path survives.
func FuzzRedact(f *testing.F) {
	f.Add(`{"subject":{"ref":"S","names":{"primary":"P","x":1},"documents":[{"a":1,"b":[{"a":2}]}]},"record":{"gbv":{}}}`, "subject.names.x,subject.documents.a,record.gbv")
	f.Add(`{"consent":{"id":"C","override":{"reason":"r","z":1}}}`, "consent.override.z,consent.id")
	f.Add(`{"record":{"psychosocial":{"assessment":"x"}}}`, "record.psychosocial.assessment,record")
	f.Fuzz(func(t *testing.T, in, pathList string) {
		v, err := envelope.DecodeStrict([]byte(in), 0)
		if err != nil {
			return
		}
		msg, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k := range msg {
			if !policy.TopLevelFields[k] {
				delete(msg, k)
			}
		}
		if !validNames(msg) {
			return
		}
		before, _ := json.Marshal(msg)
		paths := strings.Split(pathList, ",")
		out := exchange.Redact(msg, paths)
		if err := exchange.CheckDelivered(msg, out, paths); err != nil {
			t.Fatalf("Redact(%s, %q) fails the check: %v", in, paths, err)
		}
		if after, _ := json.Marshal(msg); string(after) != string(before) {
			t.Fatalf("input modified")
		}
	})
}

func validNames(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if !envelope.ValidMemberName(k) || !validNames(c) {
				return false
			}
		}
	case []any:
		for _, c := range t {
			if !validNames(c) {
				return false
			}
		}
	}
	return true
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func BenchmarkRedact(b *testing.B) {
	var msg map[string]any
	_ = json.Unmarshal([]byte(`{"id":"1","subject":{"ref":"S","names":{"primary":"P"},"biometrics":{"mode":"1:1"},"location":{"country":"SYR"}},"record":{"notes":"n","gbv":{"x":1},"allegations":{"s":"x"}}}`), &msg)
	paths := []string{"subject.biometrics", "subject.location", "record.gbv", "record.allegations"}
	for b.Loop() {
		exchange.Redact(msg, paths)
	}
}
