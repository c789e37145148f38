package policy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/xborder/xborder/gateway/policy"
)

// What no deadline interrupts, or what reaches the files of the machine,
// is refused at compile (issue 20): strings.render_template, and a JSON
// Schema that refers outside itself or is not known at compile.
func TestCompileRefusesUnboundedBuiltins(t *testing.T) {
	t.Parallel()
	bodies := map[string]struct{ body, want string }{
		"render_template": {`x := strings.render_template("{{range 100000000000}}{{end}}", {})`, "strings.render_template"},
		"file $ref":       {`x := json.verify_schema({"$ref": "file:///etc/hostname"})`, "refer to itself only"},
		"relative $ref":   {`x := json.match_schema({}, {"properties": {"a": {"$ref": "other.json#/x"}}})`, "refer to itself only"},
		"$ref as text":    {`x := json.verify_schema("{\"$ref\": \"file:///dev/zero\"}")`, "refer to itself only"},
		"nested $id":      {`x := json.verify_schema({"properties": {"a": {"$id": "file:///etc/", "$ref": "#"}}})`, "refer to itself only"},
		"unknown $schema": {`x := json.verify_schema({"$schema": "file:///etc/hostname"})`, "refer to itself only"},
		"computed":        {`x := json.verify_schema({"$ref": concat("", ["file:///etc/", "hostname"])})`, "known at compile"},
		"from the input":  {`x := json.match_schema({}, input.message.schema)`, "known at compile"},
		"from a variable": {`x if { some s in [{"$ref": "#"}, input.s]; json.verify_schema(s) }`, "known at compile"},
		"data-only rule":  {"s := {\"$ref\": concat(\"\", [\"file:\", \"///etc/hostname\"])}\nx := json.verify_schema(s)", "refer to itself only"},
	}
	// Each refusal is of the added module alone: beside a small policy,
	// not the shipped one, so that these compiles stay cheap. The shipped
	// policy's own schema calls are compiled at the end.
	for name, c := range bodies {
		t.Run(name, func(t *testing.T) {
			files := tinyPolicy("10", "1")
			files["evil.rego"] = &fstest.MapFile{Data: []byte("package xborder.evil\n\n" + c.body + "\n")}
			_, err := policy.Compile(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile = %v, want an error with %q", err, c.want)
			}
		})
	}
	// A schema that refers to itself, constant or from the data, compiles:
	// minimise.rego's schema of the forms is one (every other test).
	files := policyFiles(t)
	files["ok.rego"] = &fstest.MapFile{Data: []byte("package xborder.ok\n\nx := json.verify_schema({\"definitions\": {\"a\": {}}, \"$ref\": \"#/definitions/a\"})\n")}
	if _, err := policy.Compile(context.Background(), files, policy.Options{Timeout: testTimeout, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
}

// A range whose size the input chooses is refused when it runs (the
// size check of every engine of this program, the live one included),
// instead of filling the gateway's memory.
func TestRangeSizeChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, q := range []string{"count(numbers.range(1, n))", "count(numbers.range_step(1, n, 1))", "bits.lsh(1, n)"} {
		for n, ok := range map[int]bool{1000: true, 200000000: false} {
			_, err := rego.New(rego.Query("n := "+strconv.Itoa(n)+"; x := "+q), rego.StrictBuiltinErrors(true),
				rego.Store(inmem.NewFromObject(map[string]any{})), rego.SetRegoVersion(ast.RegoV1)).Eval(ctx)
			if ok != (err == nil) || (!ok && !strings.Contains(err.Error(), "refused")) {
				t.Errorf("%s with n = %d: %v", q, n, err)
			}
		}
	}
}
