package policy

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
)

// An evaluation error is described by code and location only: a built-in's
// message would quote the operand, which comes from the message.
func TestEvaluationErrorsQuoteNoInput(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"p.rego": {Data: []byte(`package xborder

decision := {"allow": true, "reasons": [], "redact": [], "obligations": {"retention_days": 1, "review": false}} if {
	time.parse_rfc3339_ns(input.message.subject.birth_date) > 0
}
`)},
		"data.json": {Data: []byte(`{}`)},
	}
	b, err := Compile(context.Background(), fsys, Options{Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.Decide(context.Background(), Input{Now: "2026-11-22T12:00:00Z",
		Message: map[string]any{"subject": map[string]any{"birth_date": "CANARY-1999-13-45"}}})
	if err == nil || d.Allow {
		t.Fatalf("a failing built-in allowed: %v %v", d, err)
	}
	if strings.Contains(err.Error(), "CANARY") {
		t.Errorf("the error quotes the input: %v", err)
	}
	if !strings.Contains(err.Error(), "p.rego") {
		t.Errorf("the error lost its location: %v", err)
	}
}
