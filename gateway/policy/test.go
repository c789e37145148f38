package policy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// RegoTestTimeout bounds one Rego test case (OPA's default is 5 s, which
// the heaviest table tests exceeded on a loaded 2-core machine).
const RegoTestTimeout = time.Minute

// TestReport is the outcome of a bundle's Rego tests and scenarios.
type TestReport struct {
	RegoPassed      int              `json:"rego_passed"`
	RegoFailed      int              `json:"rego_failed"`
	ScenariosPassed int              `json:"scenarios_passed"`
	ScenariosFailed int              `json:"scenarios_failed"`
	Failures        []string         `json:"failures,omitempty"`
	Scenarios       []ScenarioResult `json:"scenarios,omitempty"`
}

// OK reports whether everything passed.
func (r TestReport) OK() bool { return r.RegoFailed == 0 && r.ScenariosFailed == 0 }

// Err is nil when everything passed, and otherwise summarises the failures.
func (r TestReport) Err() error {
	if r.OK() {
		return nil
	}
	const show = 5
	f := r.Failures
	more := ""
	if len(f) > show {
		more = fmt.Sprintf(" (and %d more)", len(f)-show)
		f = f[:show]
	}
	return fmt.Errorf("policy: tests: %d rego and %d scenario failures: %s%s",
		r.RegoFailed, r.ScenariosFailed, strings.Join(f, "; "), more)
}

// scenarioTimeout bounds one decision of a scenario at compile, for the
// same reason.
const scenarioTimeout = RegoTestTimeout

// Test runs the bundle's Rego tests in-process (opa/v1/tester, with the same
// restricted capabilities and strict built-in errors) and every scenario in
// scenarios/ of the bundle's file system. The error is for a test run that
// could not start; failures are in the report.
func (b *Bundle) Test(ctx context.Context) (TestReport, error) {
	var rep TestReport
	modules, err := b.parse(true)
	if err != nil {
		return rep, err
	}
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(Capabilities()).WithDefaultRegoVersion(ast.RegoV1)).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(b.store()).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(false).
		// A test is not a decision: its result must not depend on how
		// loaded the machine is (OPA's default is 5 s a test, which the
		// heaviest table tests exceeded on a loaded 2-core machine). ctx
		// still bounds the whole run.
		SetTimeout(RegoTestTimeout).
		SetParallel(2)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("policy: tests: %w", err)
	}
	var regoFailures []string
	for r := range ch {
		if r.Skip {
			continue
		}
		name := r.Package + "." + r.Name
		switch {
		case r.Error != nil:
			rep.RegoFailed++
			regoFailures = append(regoFailures, fmt.Sprintf("%s: error: %v", name, r.Error))
		case r.Fail:
			rep.RegoFailed++
			failed := failedSubResults(r.SubResults, "")
			if len(failed) == 0 {
				regoFailures = append(regoFailures, name)
			}
			for _, f := range failed {
				regoFailures = append(regoFailures, name+"/"+f)
			}
		default:
			rep.RegoPassed++
		}
	}
	sort.Strings(regoFailures)
	rep.Failures = append(rep.Failures, regoFailures...)

	results, err := RunScenarios(ctx, b, b.fsys, ScenarioDir)
	if err != nil {
		return rep, err
	}
	rep.Scenarios = results
	for _, res := range results {
		if res.Pass {
			rep.ScenariosPassed++
			continue
		}
		rep.ScenariosFailed++
		why := strings.Join(res.Problems, ", ")
		if res.Err != "" {
			why = strings.TrimSpace(res.Err + " " + why)
		}
		rep.Failures = append(rep.Failures, fmt.Sprintf("scenario %s: %s", res.File, why))
	}
	return rep, nil
}

func failedSubResults(srm tester.SubResultMap, prefix string) []string {
	var out []string
	for name, sr := range srm {
		if !sr.Fail {
			continue
		}
		if sub := failedSubResults(sr.SubResults, prefix+name+"/"); len(sub) > 0 {
			out = append(out, sub...)
			continue
		}
		out = append(out, prefix+name)
	}
	sort.Strings(out)
	return out
}
