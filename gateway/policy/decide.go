package policy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
)

// ErrUndefined is returned (wrapped) when the entrypoint yields no decision.
var ErrUndefined = errors.New("policy: decision undefined")

// Decide evaluates the entrypoint for in. Whenever the policy cannot answer
// (undefined decision, evaluation error, timeout, malformed result) it
// returns a denial and a non-nil error (R1): the caller may not proceed on
// the error, and the denial is what it should record.
func (b *Bundle) Decide(ctx context.Context, in Input) (Decision, error) {
	if b == nil {
		return Deny("no policy is loaded"), errors.New("policy: no bundle")
	}
	return b.decide(ctx, in, b.opts.Timeout)
}

// decide is Decide under the given deadline: the serving one for traffic, a
// generous one for a bundle's own scenarios, whose verdict must not depend
// on how loaded the machine is.
func (b *Bundle) decide(ctx context.Context, in Input, timeout time.Duration) (Decision, error) {
	if b == nil {
		return Deny("no policy is loaded"), errors.New("policy: no bundle")
	}
	value, err := b.inputValue(in)
	if err != nil {
		return Deny("the decision input could not be read"), err
	}
	// The deadline bounds the evaluation, from when an evaluator takes it
	// (evaluator.go); the caller's context bounds the wait as well.
	var (
		d         Decision
		cancelled error
	)
	werr := evaluators().do(ctx, timeout+max(timeout, stuckGrace), func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		// OPA notices a cancellation asynchronously; a done context must
		// never let a fast evaluation through.
		if cancelled = ctx.Err(); cancelled == nil {
			d, err = b.eval(ctx, value)
		}
	})
	if errors.Is(werr, ErrStuck) {
		// d, err and cancelled are still the stuck evaluation's.
		b.opts.Logger.Warn("policy: an evaluation is stuck in a built-in past its deadline; its evaluator was replaced",
			"component", "policy", "version", b.Version, "evaluators_stuck", Evaluators().Stuck)
		return Deny("the policy evaluation did not end"), fmt.Errorf("policy: evaluate: %w", ErrStuck)
	}
	if cerr := cmp.Or(werr, cancelled); cerr != nil {
		return Deny("the policy evaluation was cancelled"), fmt.Errorf("policy: evaluate: %w", cerr)
	}
	return d, err
}

// resultVar is the variable the compiled query binds the decision to.
const resultVar = ast.Var("result")

// eval runs the compiled entrypoint query on the interpreter, as the rego
// package's prepared query would (strict built-in errors, indexing, early
// exit, the same compiler and store), without what a decision does not use:
// metrics, a goroutine watching the context, the decision converted to Go
// values and back. A denial comes with every error.
func (b *Bundle) eval(ctx context.Context, input ast.Value) (Decision, error) {
	txn, err := b.docs.NewTransaction(ctx)
	if err != nil {
		return Deny("the policy evaluation failed"), fmt.Errorf("policy: evaluate: %w", err)
	}
	defer b.docs.Abort(ctx, txn)
	// The deadline and the caller's cancellation stop the interpreter.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	q := topdown.NewQuery(b.query).
		WithCompiler(b.compiler).
		WithStore(b.docs).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithStrictBuiltinErrors(true).
		WithCancel(cancel).
		WithMetrics(noMetrics).
		WithInterQueryBuiltinValueCache(b.values)
	var seed *refTable
	if b.seeds != nil {
		seed = b.seeds.cache
	}
	cache := newDecisionCache(seed, b.roots)
	defer cache.release()
	q = q.WithVirtualCache(cache).WithBaseCache(&cache.data)
	var (
		value *ast.Term
		n     int
	)
	err = q.Iter(ctx, func(qr topdown.QueryResult) error {
		n++
		value = qr[resultVar]
		return nil
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return Deny("the policy evaluation timed out"), fmt.Errorf("policy: evaluate: %w", ctx.Err())
	case err != nil:
		return Deny("the policy evaluation failed"), fmt.Errorf("policy: evaluate: %s", describe(err))
	case n == 0 || value == nil:
		return Deny("the policy gave no decision"), ErrUndefined
	case n > 1:
		return Deny("the policy gave more than one decision"), errors.New("policy: more than one decision")
	}
	d, err := readDecision(value.Value)
	if err != nil {
		return Deny("the policy gave a malformed decision"), err
	}
	return d, nil
}

var noMetrics = metrics.NoOp()

// valueCacheEntries bounds a bundle's cache of prepared built-in arguments.
// The policy's only entry is the schema of the forms; the bound keeps a
// policy that passes computed arguments from growing it.
const valueCacheEntries = 64

func newValueCache(ctx context.Context) cache.InterQueryValueCache {
	n := valueCacheEntries
	return cache.NewInterQueryValueCache(ctx, &cache.Config{
		InterQueryBuiltinValueCache: cache.InterQueryBuiltinValueCacheConfig{MaxNumEntries: &n},
	})
}

// inputValue converts the input to an AST value without a JSON round trip
// or intermediate Go maps. Strings the policy data knows (field names,
// purposes, roles, participant ids, catalogue values) are shared from the
// bundle's table instead of being allocated for every decision.
func (b *Bundle) inputValue(in Input) (ast.Value, error) {
	c := converter{known: b.strings}
	msg, err := c.value(in.Message)
	if err != nil {
		return nil, fmt.Errorf("policy: input: %w", err)
	}
	o := c.object(6)
	o.add("now", c.str(in.Now))
	o.add("message", msg)
	o.add("sender", c.party(in.Sender))
	o.add("recipient", c.party(in.Recipient))
	o.add("consent_withdrawn", ast.Boolean(in.ConsentWithdrawn))
	if r := in.Request; r != nil {
		ro := c.object(6)
		ro.add("id", c.str(r.ID))
		ro.add("type", c.str(r.Type))
		ro.add("from", c.str(r.From))
		ro.add("to", c.str(r.To))
		ro.add("purpose", c.str(r.Purpose))
		ro.add("requested_assertions", c.strings(r.RequestedAssertions))
		o.add("request", ro.value())
	}
	return o.value(), nil
}

func (c converter) party(p Party) ast.Value {
	o := c.object(5)
	o.add("id", c.str(p.ID))
	o.add("kind", c.str(p.Kind))
	o.add("roles", c.strings(p.Roles))
	o.add("suspended", ast.Boolean(p.Suspended))
	if p.Country != "" {
		o.add("country", c.str(p.Country))
	}
	return o.value()
}

// converter turns generic JSON values into AST values, as
// ast.InterfaceToValue does, sharing the known strings.
type converter struct {
	known map[string]ast.Value // read-only
}

func (c converter) str(s string) ast.Value {
	if v, ok := c.known[s]; ok {
		return v
	}
	return ast.String(s)
}

// objectBuilder collects the members of an object: its terms in one block.
type objectBuilder struct {
	c     converter
	terms []ast.Term
	pairs [][2]*ast.Term
}

func (c converter) object(n int) *objectBuilder {
	return &objectBuilder{c: c, terms: make([]ast.Term, 0, 2*n), pairs: make([][2]*ast.Term, 0, n)}
}

func (o *objectBuilder) add(key string, v ast.Value) {
	i := len(o.terms)
	o.terms = append(o.terms, ast.Term{Value: o.c.str(key)}, ast.Term{Value: v})
	o.pairs = append(o.pairs, [2]*ast.Term{&o.terms[i], &o.terms[i+1]})
}

func (o *objectBuilder) value() ast.Value { return ast.NewObject(o.pairs...) }

func (c converter) strings(ss []string) ast.Value {
	terms := make([]ast.Term, len(ss))
	ptrs := make([]*ast.Term, len(ss))
	for i, e := range ss {
		terms[i].Value = c.str(e)
		ptrs[i] = &terms[i]
	}
	return ast.NewArray(ptrs...)
}

func (c converter) value(x any) (ast.Value, error) {
	switch x := x.(type) {
	case string:
		return c.str(x), nil
	case json.Number:
		return ast.Number(x), nil
	case bool:
		return ast.Boolean(x), nil
	case nil:
		return ast.NullValue, nil
	case map[string]any: // nil too: an empty object, as before
		o := c.object(len(x))
		for k, v := range x {
			val, err := c.value(v)
			if err != nil {
				return nil, err
			}
			o.add(k, val)
		}
		return o.value(), nil
	case []any:
		terms := make([]ast.Term, len(x))
		ptrs := make([]*ast.Term, len(x))
		for i, e := range x {
			val, err := c.value(e)
			if err != nil {
				return nil, err
			}
			terms[i].Value = val
			ptrs[i] = &terms[i]
		}
		return ast.NewArray(ptrs...), nil
	case []string:
		return c.strings(x), nil
	}
	return ast.InterfaceToValue(x)
}

// knownStrings collects the keys and string values of the policy data and
// the field names of the input, each as one shared AST value.
func knownStrings(data any) map[string]ast.Value {
	out := map[string]ast.Value{}
	add := func(s string) {
		if _, ok := out[s]; !ok {
			out[s] = ast.String(s)
		}
	}
	for _, s := range []string{"now", "message", "sender", "recipient", "request", "consent_withdrawn",
		"id", "kind", "country", "roles", "suspended", "requested_assertions", "member-state", "un-entity"} {
		add(s)
	}
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case string:
			add(x)
		case map[string]any:
			for k, v := range x {
				add(k)
				walk(v)
			}
		case []any:
			for _, v := range x {
				walk(v)
			}
		}
	}
	walk(data)
	return out
}

// readDecision reads the entrypoint's value strictly, as it is (no
// conversion to Go values): every field of DOMAIN.md §7 present and of its
// type.
func readDecision(v ast.Value) (Decision, error) {
	bad := func(what string) (Decision, error) {
		return Decision{}, fmt.Errorf("policy: malformed decision: %s", what)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return bad("not an object")
	}
	var d Decision
	if d.Allow, ok = boolean(obj.Get(keyAllow)); !ok {
		return bad("allow is not a boolean")
	}
	reasons, ok := elements(obj.Get(keyReasons))
	if !ok {
		return bad("reasons is not an array")
	}
	d.Reasons = make([]Reason, 0, len(reasons))
	for _, r := range reasons {
		ro, ok := r.Value.(ast.Object)
		if !ok {
			return bad("a reason is not an object")
		}
		rule, ok1 := str(ro.Get(keyRule))
		msg, ok2 := str(ro.Get(keyMessage))
		if !ok1 || !ok2 || rule == "" {
			return bad("a reason lacks rule or message")
		}
		d.Reasons = append(d.Reasons, Reason{Rule: rule, Message: msg})
	}
	redact, ok := elements(obj.Get(keyRedact))
	if !ok {
		return bad("redact is not an array")
	}
	d.Redact = make([]string, 0, len(redact))
	for _, p := range redact {
		s, ok := str(p)
		if !ok || s == "" {
			return bad("a redact path is not a string")
		}
		d.Redact = append(d.Redact, s)
	}
	ob, ok := value(obj.Get(keyObligations)).(ast.Object)
	if !ok {
		return bad("obligations is not an object")
	}
	days, err := wholeNumber(ob.Get(keyRetentionDays))
	if err != nil {
		return bad("obligations.retention_days is not a whole number")
	}
	d.Obligations.RetentionDays = days
	if d.Obligations.Review, ok = boolean(ob.Get(keyReview)); !ok {
		return bad("obligations.review is not a boolean")
	}
	if !d.Allow && len(d.Reasons) == 0 {
		return bad("a denial without reasons")
	}
	return d, nil
}

var (
	keyAllow         = ast.StringTerm("allow")
	keyReasons       = ast.StringTerm("reasons")
	keyRedact        = ast.StringTerm("redact")
	keyObligations   = ast.StringTerm("obligations")
	keyRetentionDays = ast.StringTerm("retention_days")
	keyReview        = ast.StringTerm("review")
	keyRule          = ast.StringTerm("rule")
	keyMessage       = ast.StringTerm("message")
)

// value is t's value, nil for an absent member.
func value(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

func boolean(t *ast.Term) (bool, bool) {
	b, ok := value(t).(ast.Boolean)
	return bool(b), ok
}

func str(t *ast.Term) (string, bool) {
	s, ok := value(t).(ast.String)
	return string(s), ok
}

// elements are the members of an array, or of a set in its iteration order
// (a set reads as an array in JSON, as the rego package gives it).
func elements(t *ast.Term) ([]*ast.Term, bool) {
	switch v := value(t).(type) {
	case *ast.Array:
		out := make([]*ast.Term, 0, v.Len())
		v.Foreach(func(e *ast.Term) { out = append(out, e) })
		return out, true
	case ast.Set:
		out := make([]*ast.Term, 0, v.Len())
		v.Foreach(func(e *ast.Term) { out = append(out, e) })
		return out, true
	}
	return nil, false
}

// wholeNumber reads a non-negative integer, as json.Number.Int64 reads it.
func wholeNumber(t *ast.Term) (int, error) {
	n, ok := value(t).(ast.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	i, err := json.Number(n).Int64()
	if err != nil || i < 0 {
		return 0, errors.New("not a whole number")
	}
	return int(i), nil
}

// describe names an evaluation error by its OPA code and Rego location
// only: a built-in's message may quote its operands, which come from the
// message (a malformed birth date, say), and errors end up in logs.
func describe(err error) string {
	var te *topdown.Error
	if errors.As(err, &te) {
		loc := "unknown location"
		if te.Location != nil {
			loc = te.Location.String()
		}
		return te.Code + " at " + loc
	}
	var ae ast.Errors
	if errors.As(err, &ae) && len(ae) > 0 && ae[0].Location != nil {
		return ae[0].Code + " at " + ae[0].Location.String()
	}
	return "evaluation error"
}
