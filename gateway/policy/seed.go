package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Rules that read the policy data only (the allow-lists as sets, the
// agreements by party, the compiled date patterns) have the same value in
// every decision of a bundle. They are evaluated once, when the bundle is
// compiled, and every decision starts with them in its virtual-document
// cache, so that the per-message work is what depends on the message.
//
// Which rules qualify is decided from the compiled modules, not from a list:
// a complete rule without arguments whose own body, and the bodies of every
// rule and function it may reach, never read input, never use `with` and
// call no non-deterministic built-in. A rule whose evaluation fails (a
// built-in error, a conflict) or takes longer than a decision may is left to
// each decision, where it fails or times out as before.

// seeds is the frozen cache of the data-only rules of one bundle. It is
// read-only after compile and shared by concurrent decisions.
type seeds struct {
	cache *refTable
	refs  []ast.Ref // the seeded rules, for tests and diagnostics
}

// dataOnlyRefs returns the refs of the complete, argument-free rules of c
// that depend on data only.
func dataOnlyRefs(c *ast.Compiler) []ast.Ref {
	a := &dataOnly{c: c, memo: map[*ast.Rule]bool{}}
	seen := map[string]bool{}
	var refs []ast.Ref
	for _, name := range sortedKeys(c.Modules) {
		for _, rule := range c.Modules[name].Rules {
			ref := rule.Ref()
			if len(rule.Head.Ref()) != 1 || len(rule.Head.Args) > 0 || rule.Head.RuleKind() != ast.SingleValue || !ref.IsGround() {
				continue
			}
			key := ref.String()
			if seen[key] {
				continue
			}
			seen[key] = true
			rules := c.GetRulesExact(ref)
			ok := len(rules) > 0
			for _, r := range rules {
				if len(r.Head.Args) > 0 || r.Head.RuleKind() != ast.SingleValue || !a.rule(r) {
					ok = false
					break
				}
			}
			if ok {
				refs = append(refs, ref)
			}
		}
	}
	return refs
}

type dataOnly struct {
	c    *ast.Compiler
	memo map[*ast.Rule]bool
}

// rule reports whether r, its else branches and everything they may reach
// read data only.
func (a *dataOnly) rule(r *ast.Rule) bool {
	if ok, done := a.memo[r]; done {
		return ok
	}
	a.memo[r] = true // Rego has no recursion; this only ends cycles of the walk
	ok := a.node(r)
	a.memo[r] = ok
	return ok
}

func (a *dataOnly) node(x any) bool {
	ok := true
	ast.WalkNodes(x, func(n ast.Node) bool {
		if !ok {
			return true
		}
		switch n := n.(type) {
		case *ast.Expr:
			if len(n.With) > 0 {
				ok = false
			} else if n.IsCall() {
				ok = a.callable(n.Operator())
			}
		case *ast.Term:
			switch v := n.Value.(type) {
			case ast.Call:
				if len(v) > 0 {
					if op, isRef := v[0].Value.(ast.Ref); isRef {
						ok = a.callable(op)
					}
				}
			case ast.Ref:
				ok = a.ref(v)
			}
		}
		return !ok
	})
	return ok
}

// callable: a deterministic built-in, or a function that reads data only.
func (a *dataOnly) callable(op ast.Ref) bool {
	if op.HasPrefix(ast.DefaultRootRef) {
		return a.ref(op)
	}
	if b, isBuiltin := ast.BuiltinMap[op.String()]; isBuiltin {
		return !b.Nondeterministic
	}
	// A local variable (never a function in Rego) or an unknown operator,
	// which the compiler would have refused.
	return true
}

func (a *dataOnly) ref(ref ast.Ref) bool {
	switch {
	case ref.HasPrefix(ast.InputRootRef):
		return false
	case ref.HasPrefix(ast.DefaultRootRef):
		for _, r := range a.c.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true}) {
			if !a.rule(r) {
				return false
			}
		}
	}
	return true
}

// seed evaluates the data-only rules of c against store, each within
// timeout, and freezes their values in a virtual-document cache.
func seed(ctx context.Context, c *ast.Compiler, store storage.Store, timeout time.Duration) (*seeds, error) {
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: seed: %w", err)
	}
	defer store.Abort(ctx, txn)
	s := &seeds{cache: newRefTable(64)}
	x := ast.VarTerm("x")
	for _, ref := range dataOnlyRefs(c) {
		body, err := c.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(x, ast.NewTerm(ref))))
		if err != nil {
			continue
		}
		cancel := topdown.NewCancel()
		timer := time.AfterFunc(timeout, cancel.Cancel)
		q := topdown.NewQuery(body).
			WithCompiler(c).
			WithStore(store).
			WithTransaction(txn).
			WithStrictBuiltinErrors(true).
			WithCancel(cancel)
		rs, err := q.Run(ctx)
		timer.Stop()
		if err != nil || len(rs) > 1 {
			continue // left to each decision
		}
		var value *ast.Term // nil: undefined
		if len(rs) == 1 {
			value = rs[0][x.Value.(ast.Var)]
		}
		s.cache.put(refHash(ref), ref, value)
		s.refs = append(s.refs, ref)
	}
	return s, nil
}
