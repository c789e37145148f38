package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		// OPA notices a cancellation asynchronously; a done context must
		// never let a fast evaluation through.
		return Deny("the policy evaluation was cancelled"), fmt.Errorf("policy: evaluate: %w", err)
	}
	opts := []rego.EvalOption{rego.EvalParsedInput(value)}
	if b.seeds != nil {
		opts = append(opts, rego.EvalVirtualCache(b.seeds.evalCache()))
	}
	var rs rego.ResultSet
	evaluators().do(func() { rs, err = b.query.Eval(ctx, opts...) })
	if err != nil {
		if ctx.Err() != nil {
			return Deny("the policy evaluation timed out"), fmt.Errorf("policy: evaluate: %w", ctx.Err())
		}
		return Deny("the policy evaluation failed"), fmt.Errorf("policy: evaluate: %s", describe(err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Deny("the policy gave no decision"), ErrUndefined
	}
	if len(rs) > 1 {
		return Deny("the policy gave more than one decision"), errors.New("policy: more than one decision")
	}
	d, err := parseDecision(rs[0].Expressions[0].Value)
	if err != nil {
		return Deny("the policy gave a malformed decision"), err
	}
	return d, nil
}

// inputValue converts the input to an AST value without a JSON round trip.
// Strings the policy data knows (field names, purposes, roles, participant
// ids, catalogue values) are shared from the bundle's table instead of
// being allocated for every decision.
func (b *Bundle) inputValue(in Input) (ast.Value, error) {
	c := converter{strings: b.strings}
	obj := map[string]any{
		"now":               in.Now,
		"message":           in.Message,
		"sender":            partyMap(in.Sender),
		"recipient":         partyMap(in.Recipient),
		"consent_withdrawn": in.ConsentWithdrawn,
	}
	if in.Request != nil {
		obj["request"] = map[string]any{
			"id":                   in.Request.ID,
			"type":                 in.Request.Type,
			"from":                 in.Request.From,
			"to":                   in.Request.To,
			"purpose":              in.Request.Purpose,
			"requested_assertions": in.Request.RequestedAssertions,
		}
	}
	v, err := c.value(obj)
	if err != nil {
		return nil, fmt.Errorf("policy: input: %w", err)
	}
	return v, nil
}

func partyMap(p Party) map[string]any {
	m := map[string]any{
		"id":        p.ID,
		"kind":      p.Kind,
		"roles":     p.Roles,
		"suspended": p.Suspended,
	}
	if p.Country != "" {
		m["country"] = p.Country
	}
	return m
}

// converter turns generic JSON values into AST values, as
// ast.InterfaceToValue does, sharing the known strings.
type converter struct {
	strings map[string]ast.Value // read-only
}

func (c converter) str(s string) ast.Value {
	if v, ok := c.strings[s]; ok {
		return v
	}
	return ast.String(s)
}

func (c converter) value(x any) (ast.Value, error) {
	switch x := x.(type) {
	case string:
		return c.str(x), nil
	case map[string]any:
		terms := make([]ast.Term, 2*len(x))
		pairs := make([][2]*ast.Term, 0, len(x))
		i := 0
		for k, v := range x {
			val, err := c.value(v)
			if err != nil {
				return nil, err
			}
			terms[i].Value, terms[i+1].Value = c.str(k), val
			pairs = append(pairs, [2]*ast.Term{&terms[i], &terms[i+1]})
			i += 2
		}
		return ast.NewObject(pairs...), nil
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
		terms := make([]ast.Term, len(x))
		ptrs := make([]*ast.Term, len(x))
		for i, e := range x {
			terms[i].Value = c.str(e)
			ptrs[i] = &terms[i]
		}
		return ast.NewArray(ptrs...), nil
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

// parseDecision checks the shape of the entrypoint's value strictly: every
// field of DOMAIN.md §7 present and of its type.
func parseDecision(v any) (Decision, error) {
	bad := func(what string) (Decision, error) {
		return Decision{}, fmt.Errorf("policy: malformed decision: %s", what)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return bad("not an object")
	}
	var d Decision
	if d.Allow, ok = obj["allow"].(bool); !ok {
		return bad("allow is not a boolean")
	}
	reasons, ok := obj["reasons"].([]any)
	if !ok {
		return bad("reasons is not an array")
	}
	d.Reasons = make([]Reason, 0, len(reasons))
	for _, r := range reasons {
		ro, ok := r.(map[string]any)
		if !ok {
			return bad("a reason is not an object")
		}
		rule, ok1 := ro["rule"].(string)
		msg, ok2 := ro["message"].(string)
		if !ok1 || !ok2 || rule == "" {
			return bad("a reason lacks rule or message")
		}
		d.Reasons = append(d.Reasons, Reason{Rule: rule, Message: msg})
	}
	redact, ok := obj["redact"].([]any)
	if !ok {
		return bad("redact is not an array")
	}
	d.Redact = make([]string, 0, len(redact))
	for _, p := range redact {
		s, ok := p.(string)
		if !ok || s == "" {
			return bad("a redact path is not a string")
		}
		d.Redact = append(d.Redact, s)
	}
	ob, ok := obj["obligations"].(map[string]any)
	if !ok {
		return bad("obligations is not an object")
	}
	days, err := wholeNumber(ob["retention_days"])
	if err != nil {
		return bad("obligations.retention_days is not a whole number")
	}
	d.Obligations.RetentionDays = days
	if d.Obligations.Review, ok = ob["review"].(bool); !ok {
		return bad("obligations.review is not a boolean")
	}
	if !d.Allow && len(d.Reasons) == 0 {
		return bad("a denial without reasons")
	}
	return d, nil
}

func wholeNumber(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil || i < 0 {
			return 0, errors.New("not a whole number")
		}
		return int(i), nil
	case float64:
		if n < 0 || n != float64(int(n)) {
			return 0, errors.New("not a whole number")
		}
		return int(n), nil
	}
	return 0, errors.New("not a number")
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
