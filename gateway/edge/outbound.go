package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/policy"
)

// OutboundEntrypoint is the rule the participant's outbound policy defines:
// {"allow": bool, "reasons": [{"rule", "message"}]}.
const OutboundEntrypoint = "data.xborder.outbound.decision"

// outboundTimeout bounds one outbound decision; a timeout is a denial.
const outboundTimeout = 2 * time.Second

// outboundPolicy is the participant's own policy on what may leave: the
// hub's engine (embedded OPA, the hub's restricted capabilities: no
// network, clock or randomness), its Rego tests run before it serves.
type outboundPolicy struct {
	version string
	query   rego.PreparedEvalQuery
}

// watchOutbound reloads the outbound policy when its folder changes, as
// the hub reloads its own: the new version serves only once it compiles and
// its tests pass; a refused one is audited and the last good one keeps
// serving.
func (e *Edge) watchOutbound(ctx context.Context) {
	if e.cfg.OutboundPolicies == "" {
		return
	}
	t := time.NewTicker(e.o.PolicyWatch)
	defer t.Stop()
	refused, steady := "", policy.Steady{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _, version, err := readOutbound(e.cfg.OutboundPolicies)
		if err != nil {
			version = "unreadable" // refused once, not at every tick
		}
		cur := e.out.Load()
		if version == cur.version || version == refused {
			steady.Reset()
			continue
		}
		if !steady.Twice(version) {
			continue
		}
		next, lerr := loadOutbound(ctx, e.cfg.OutboundPolicies)
		if lerr != nil {
			if ctx.Err() != nil {
				return
			}
			refused = version
			detail := lerr.Error()
			if len(detail) > audit.MaxDetail {
				detail = detail[:audit.MaxDetail]
			}
			if err := e.store.Record(audit.Entry{Kind: audit.KindPolicyRefused, PolicyVersion: version, Detail: detail}); err != nil {
				e.log.Error("audit write failed", "error", err)
			}
			e.log.Warn("outbound policy edit refused; the last good version keeps serving", "version", version, "serving", cur.version, "error", lerr)
			continue
		}
		refused = ""
		if err := e.store.Record(audit.Entry{Kind: audit.KindPolicyChanged, PolicyVersion: next.version}); err != nil {
			e.log.Error("audit write failed", "error", err)
		}
		e.out.Store(next)
		e.log.Info("outbound policy reloaded", "version", next.version, "previous", cur.version)
	}
}

// readOutbound reads the folder's .rego modules and data.json and digests
// them.
func readOutbound(dir string) (modules map[string]string, data map[string]any, version string, err error) {
	fsys := os.DirFS(dir)
	modules = map[string]string{}
	h := sha256.New()
	var paths []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".rego") || p == policy.DataFile) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("edge: outbound_policies: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, nil, "", fmt.Errorf("edge: outbound_policies: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		if p == policy.DataFile {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&data); err != nil {
				return nil, nil, "", fmt.Errorf("edge: outbound_policies: %s: %w", p, err)
			}
			continue
		}
		modules[p] = string(b)
	}
	if len(modules) == 0 {
		return nil, nil, "", fmt.Errorf("edge: outbound_policies: no .rego file in %s", dir)
	}
	if data == nil {
		data = map[string]any{}
	}
	return modules, data, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// loadOutbound compiles the folder's .rego files and data.json, runs its
// tests (a failing test refuses the policy, and the edge does not start),
// and prepares the entrypoint once.
func loadOutbound(ctx context.Context, dir string) (*outboundPolicy, error) {
	modules, data, version, err := readOutbound(dir)
	if err != nil {
		return nil, err
	}

	parsed := map[string]*ast.Module{}
	for p, src := range modules {
		m, err := ast.ParseModuleWithOpts(path.Join(dir, p), src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("edge: outbound_policies: %w", err)
		}
		parsed[p] = m
	}
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(policy.Capabilities()).WithDefaultRegoVersion(ast.RegoV1)).
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(inmem.NewFromObject(data)).
		SetModules(parsed).
		RaiseBuiltinErrors(true).
		SetTimeout(time.Minute)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("edge: outbound_policies: tests: %w", err)
	}
	var failed []string
	for r := range ch {
		if r.Skip {
			continue
		}
		if r.Error != nil || r.Fail {
			failed = append(failed, r.Package+"."+r.Name)
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("edge: outbound_policies: tests failed, the policy does not serve: %s", strings.Join(failed, ", "))
	}

	opts := []func(*rego.Rego){
		rego.Query("result = " + OutboundEntrypoint),
		rego.Store(inmem.NewFromObject(data)),
		rego.Capabilities(policy.Capabilities()),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	}
	for p, src := range modules {
		if strings.HasSuffix(p, "_test.rego") {
			continue
		}
		opts = append(opts, rego.Module(path.Join(dir, p), src))
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("edge: outbound_policies: %w", err)
	}
	return &outboundPolicy{version: version, query: q}, nil
}

// decide asks the outbound policy about message (as it will be sent) for
// caller. Anything but an explicit allow is a denial.
func (p *outboundPolicy) decide(ctx context.Context, message map[string]any, caller string) (bool, []Reason, error) {
	ctx, cancel := context.WithTimeout(ctx, outboundTimeout)
	defer cancel()
	rs, err := p.query.Eval(ctx, rego.EvalInput(map[string]any{"message": message, "caller": caller}))
	if err != nil {
		return false, nil, fmt.Errorf("edge: outbound policy: %w", err)
	}
	if len(rs) != 1 {
		return false, []Reason{{Rule: "outbound", Message: "the outbound policy gave no decision (default deny)"}}, nil
	}
	b, err := json.Marshal(rs[0].Bindings["result"])
	if err != nil {
		return false, nil, err
	}
	var d struct {
		Allow   *bool    `json:"allow"`
		Reasons []Reason `json:"reasons"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.Allow == nil {
		return false, nil, errors.New("edge: outbound policy: the decision is not {allow, reasons}")
	}
	if !*d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []Reason{{Rule: "outbound", Message: "the outbound policy does not allow it (default deny)"}}
	}
	return *d.Allow, d.Reasons, nil
}
