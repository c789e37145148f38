package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// What a policy may not do to the process that evaluates it, beyond the
// refused built-ins of Capabilities (STYLE 22):
//
//   - A JSON Schema may refer to itself only ("$ref": "#..."). The schema
//     library follows any other reference — file://, a relative path
//     resolved against the working folder — whatever the network
//     capabilities say; and an "$id" (or "id") moves what "#" means. Every
//     schema argument of json.verify_schema and json.match_schema must be
//     known at compile — a constant, or a rule of the policy data evaluated
//     then (minimise.rego builds the schema of the forms from the data) —
//     and be self-contained; a schema computed from the input is refused at
//     compile. The built-ins check again when they run, for what the
//     compile-time check cannot see.
//   - numbers.range, numbers.range_step and bits.lsh make values of a size
//     their arguments choose; they are refused above maxRangeSize elements
//     (bits). In a worker the address-space limit bounds what is left.

// maxRangeSize bounds the elements of one numbers.range or
// numbers.range_step, and the bits of one bits.lsh result. The shipped
// policies use none; a policy that needs more is not deciding a message.
const maxRangeSize = 100_000

// schemaArg is the position of the schema argument of the JSON Schema
// built-ins.
var schemaArg = map[string]int{"json.verify_schema": 0, "json.match_schema": 1}

func init() {
	guard := func(name string, check func(ops []*ast.Term) error) {
		orig := topdown.GetBuiltin(name)
		if orig == nil {
			return
		}
		topdown.RegisterBuiltinFunc(name, func(bctx topdown.BuiltinContext, ops []*ast.Term, iter func(*ast.Term) error) error {
			if err := check(ops); err != nil {
				return err
			}
			return orig(bctx, ops, iter)
		})
	}
	guard("numbers.range", func(ops []*ast.Term) error { return rangeSize(ops[0], ops[1], nil) })
	guard("numbers.range_step", func(ops []*ast.Term) error { return rangeSize(ops[0], ops[1], ops[2]) })
	guard("bits.lsh", func(ops []*ast.Term) error {
		if n, ok := ops[1].Value.(ast.Number); ok {
			if s, ok := n.Int(); !ok || s > maxRangeSize {
				return fmt.Errorf("bits.lsh: a shift of more than %d bits is refused", maxRangeSize)
			}
		}
		return nil
	})
	for name, i := range schemaArg {
		topdown.RegisterBuiltinFunc(name, schemaGuard(topdown.GetBuiltin(name), name, i))
	}
}

// schemaGuard checks the schema of each call, except one the built-in
// compiled before (in the bundle's value cache: checked then).
func schemaGuard(orig topdown.BuiltinFunc, name string, i int) topdown.BuiltinFunc {
	return func(bctx topdown.BuiltinContext, ops []*ast.Term, iter func(*ast.Term) error) error {
		if i < len(ops) {
			cached := false
			if bctx.InterQueryBuiltinValueCache != nil {
				_, cached = bctx.InterQueryBuiltinValueCache.Get(ops[i].Value)
			}
			if !cached {
				if err := selfContained(ops[i].Value); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
		}
		return orig(bctx, ops, iter)
	}
}

func rangeSize(a, b, step *ast.Term) error {
	x, okA := a.Value.(ast.Number)
	y, okB := b.Value.(ast.Number)
	if !okA || !okB {
		return nil // the built-in refuses it
	}
	fx, fy := new(big.Float), new(big.Float)
	if _, ok := fx.SetString(string(x)); !ok {
		return nil
	}
	if _, ok := fy.SetString(string(y)); !ok {
		return nil
	}
	n := new(big.Float).Abs(new(big.Float).Sub(fy, fx))
	if step != nil {
		if s, ok := step.Value.(ast.Number); ok {
			fs := new(big.Float)
			if _, ok := fs.SetString(string(s)); ok && fs.Sign() > 0 {
				n.Quo(n, fs)
			}
		}
	}
	if n.Cmp(big.NewFloat(maxRangeSize)) > 0 {
		return fmt.Errorf("a range of more than %d numbers is refused", maxRangeSize)
	}
	return nil
}

// errSchemaRef says what a schema may refer to.
var errSchemaRef = errors.New(`a JSON Schema may refer to itself only ("$ref": "#..."), and may not name itself ("$id", "id") or another meta-schema`)

// selfContained checks a schema given as an object or as JSON text.
func selfContained(v ast.Value) error {
	if s, ok := v.(ast.String); ok {
		var x any
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			return nil // the built-in says it is not a schema
		}
		var err error
		if v, err = ast.InterfaceToValue(x); err != nil {
			return nil
		}
	}
	bad := false
	var walk func(v ast.Value, root bool)
	walk = func(v ast.Value, root bool) {
		if bad {
			return
		}
		switch x := v.(type) {
		case ast.Object:
			x.Foreach(func(k, val *ast.Term) {
				key, _ := k.Value.(ast.String)
				s, isString := val.Value.(ast.String)
				switch string(key) {
				case "$ref":
					if !isString || !strings.HasPrefix(string(s), "#") {
						bad = true
					}
				case "$id", "id":
					// The root may name itself on the web (the gateway's
					// own data schema does); "#" is then still the root.
					if isString && !(root && strings.HasPrefix(string(s), "https://")) {
						bad = true
					}
				case "$schema":
					if !isString || !knownDraft(string(s)) {
						bad = true
					}
				}
				walk(val.Value, false)
			})
		case *ast.Array:
			x.Foreach(func(t *ast.Term) { walk(t.Value, false) })
		case ast.Set:
			x.Foreach(func(t *ast.Term) { walk(t.Value, false) })
		}
	}
	walk(v, true)
	if bad {
		return errSchemaRef
	}
	return nil
}

func knownDraft(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://"), "#")
	switch s {
	case "json-schema.org/draft-04/schema", "json-schema.org/draft-06/schema", "json-schema.org/draft-07/schema",
		"json-schema.org/schema":
		return true
	}
	return false
}

// checkSchemaCalls refuses, at compile, every JSON Schema call of c's
// modules whose schema is not known then or refers outside itself. A
// schema is known when it is a constant, or a ref to the policy data or
// to a data-only rule evaluated at compile (seeds).
func checkSchemaCalls(c *ast.Compiler, b *Bundle) error {
	var errs []string
	for _, name := range sortedKeys(c.Modules) {
		m := c.Modules[name]
		// The compiler binds a call's arguments to local variables
		// (__localN__ = data.x._forms), unique in the module: a variable is
		// known when every term it is unified with is.
		bound := map[ast.Var][]*ast.Term{}
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !e.IsEquality() && !e.IsAssignment() {
				return false
			}
			ops := e.Operands()
			if len(ops) != 2 {
				return false
			}
			for i, t := range ops {
				if v, ok := t.Value.(ast.Var); ok {
					bound[v] = append(bound[v], ops[1-i])
				}
			}
			return false
		})
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !e.IsCall() {
				return false
			}
			i, ok := schemaArg[e.Operator().String()]
			if !ok {
				return false
			}
			ops := e.Operands()
			if i >= len(ops) {
				return false
			}
			if err := b.knownSchema(ops[i], bound, 0); err != nil {
				errs = append(errs, fmt.Sprintf("%s:%d: %s: %v", name, e.Location.Row, e.Operator(), err))
			}
			return false
		})
	}
	if len(errs) > 0 {
		return fmt.Errorf("policy: compile: %s", strings.Join(errs, "; "))
	}
	return nil
}

var errSchemaUnknown = errors.New("the schema must be known at compile: a constant, or a rule of the policy data alone (not one computed from the input)")

func (b *Bundle) knownSchema(t *ast.Term, bound map[ast.Var][]*ast.Term, depth int) error {
	if v, ok := t.Value.(ast.Var); ok {
		terms := bound[v]
		if len(terms) == 0 || depth > 8 {
			return errSchemaUnknown
		}
		for _, u := range terms {
			if err := b.knownSchema(u, bound, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if ref, ok := t.Value.(ast.Ref); ok && ref.IsGround() && ref.HasPrefix(ast.DefaultRootRef) {
		if b.seeds != nil {
			if e := b.seeds.cache.find(refHash(ref), ref); e != nil {
				if e.undefined || e.value == nil {
					return nil // undefined: the call never runs
				}
				return selfContained(e.value.Value)
			}
		}
		if v := b.roots.get(ref); v != nil && len(b.compiler.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true})) == 0 {
			return selfContained(v)
		}
		return errSchemaUnknown
	}
	hasRef := false
	ast.WalkRefs(t, func(ast.Ref) bool { hasRef = true; return true })
	if hasRef || !t.IsGround() {
		return errSchemaUnknown
	}
	return selfContained(t.Value)
}
