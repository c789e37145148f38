package exchange_test

import (
	"encoding/json"
	"testing"

	"github.com/xborder/xborder/gateway/exchange"
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
