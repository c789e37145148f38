package gateway_test

import (
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// gatewaytest's strict reader of log lines, which every gateway test's Stop
// applies. Tested here: a test binary of gatewaytest's own would link the
// whole gateway for this one test.
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, line, err string
	}{
		{"plain", `{"a":1,"b":{"c":[1,{"d":2}]}}`, ""},
		{"duplicate at the top", `{"component":"policy","msg":"x","component":"policy"}`, `duplicate key "component"`},
		{"duplicate nested", `{"a":{"b":1,"b":2}}`, `duplicate key "a.b"`},
		{"duplicate in an array's object", `{"a":[{"b":1,"b":1}]}`, `duplicate key "a.b"`},
		{"same key in sibling objects", `{"a":{"b":1},"c":{"b":1}}`, ""},
		{"not an object", `[1]`, "not a JSON object"},
		{"two values", `{"a":1}{"b":2}`, "more than one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := gatewaytest.StrictJSON([]byte(tc.line))
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
	if err := gatewaytest.CheckLogLines([]byte("{\"a\":1}\n\n{\"a\":1,\"a\":2}\n")); err == nil || !strings.Contains(err.Error(), "log line 3") {
		t.Errorf("CheckLogLines: %v", err)
	}
}
