package policy

import (
	"context"
	_ "embed"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// dataSchema is the JSON Schema (draft 7) of the policy data: what the
// Rego of policies/ reads under data.xborder_data.
//
//go:embed data.schema.json
var dataSchema []byte

// DataSchema returns the JSON Schema every bundle's data is checked
// against at compile time.
func DataSchema() []byte { return append([]byte(nil), dataSchema...) }

// SchemaError lists the fields of the policy data that do not match the
// schema, each as "field: what is wrong".
type SchemaError struct {
	Problems []string
}

func (e *SchemaError) Error() string {
	const show = 8
	p := e.Problems
	more := ""
	if len(p) > show {
		more = fmt.Sprintf(" (and %d more)", len(p)-show)
		p = p[:show]
	}
	return "policy: data.json does not match the policy data schema: " + strings.Join(p, "; ") + more
}

// schemaQuery is OPA's json.match_schema against the embedded schema,
// prepared once: the same JSON Schema implementation OPA itself uses.
var schemaQuery = sync.OnceValues(func() (rego.PreparedEvalQuery, error) {
	var schema any
	if err := util.UnmarshalJSON(dataSchema, &schema); err != nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("policy: schema: %w", err)
	}
	store := inmem.NewFromObject(map[string]any{"schema": schema})
	return rego.New(
		rego.Query("r = json.match_schema(input, data.schema)"),
		rego.Store(store),
		rego.SetRegoVersion(ast.RegoV1),
	).PrepareForEval(context.Background())
})

// ValidateData checks the merged policy data (every data.json, mounted)
// against the schema. The error is a *SchemaError naming each failing field.
func ValidateData(ctx context.Context, data map[string]any) error {
	pq, err := schemaQuery()
	if err != nil {
		return err
	}
	doc, err := ast.InterfaceToValue(data)
	if err != nil {
		return fmt.Errorf("policy: data: %w", err)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(doc))
	if err != nil {
		return fmt.Errorf("policy: schema check: %w", err)
	}
	if len(rs) != 1 {
		return fmt.Errorf("policy: schema check gave no result")
	}
	r, _ := rs[0].Bindings["r"].([]any)
	if len(r) != 2 {
		return fmt.Errorf("policy: schema check gave a malformed result")
	}
	if ok, _ := r[0].(bool); ok {
		return nil
	}
	errs, _ := r[1].([]any)
	var problems []string
	for _, e := range errs {
		m, _ := e.(map[string]any)
		field, _ := m["field"].(string)
		desc, _ := m["desc"].(string)
		if field == "" || field == "(root)" {
			field = "(top level)"
		}
		problems = append(problems, field+": "+desc)
	}
	sort.Strings(problems)
	if len(problems) == 0 {
		problems = []string{"(top level): does not match"}
	}
	return &SchemaError{Problems: problems}
}
