package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/util"
)

// Entrypoint is the one query the gateway asks (DOMAIN.md §7).
const Entrypoint = "data.xborder.decision"

// DefaultTimeout bounds one evaluation when Options.Timeout is zero.
const DefaultTimeout = 200 * time.Millisecond

// DataFile is the name of the policy data files; a data.json in directory
// a/b is mounted at data.a.b, as OPA's loader does.
const DataFile = "data.json"

// seedTimeout bounds the evaluation of one data-only rule at compile: a
// decision's deadline, but never less than a second, so that a loaded
// machine does not leave to every decision what one evaluation at compile
// would have done.
func seedTimeout(decision time.Duration) time.Duration {
	return max(decision, time.Second)
}

// Options configure compilation and evaluation.
type Options struct {
	Timeout time.Duration // per decision; DefaultTimeout when zero
	Logger  *slog.Logger  // slog.Default() when nil
	// Verdicts remembers the versions that passed their tests under this
	// program (Engine only; none when its Dir is empty).
	Verdicts Verdicts
	// Vet, when set, compiles and tests a new bundle out of this process
	// (worker.Vet) before the Engine compiles it here: a test that never
	// ends, or a data-only rule that never returns, is then refused by its
	// deadline instead of wedging the reload (Engine only).
	Vet func(ctx context.Context, fsys fs.FS) (TestReport, error)
	// Cache, when set, gives the bundle compiled before from the same
	// files with the same deadline instead of compiling them again (see
	// CompileCache).
	Cache *CompileCache
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Bundle is one compiled, prepared set of policies and data. It is immutable
// and safe for concurrent use.
type Bundle struct {
	// Version is "sha256:<hex>" over the sorted (path, content) pairs of the
	// .rego and data files.
	Version string
	// Modules lists the .rego files, test files included, sorted.
	Modules  []string
	LoadedAt time.Time

	fsys    fs.FS
	sources map[string]string // .rego path -> source
	data    map[string]any
	opts    Options

	// The serving modules compiled once, the entrypoint as a compiled
	// query, and the store of the data: what each decision hands to the
	// interpreter (decide.go).
	compiler *ast.Compiler
	query    ast.Body
	docs     storage.Store        // the policy data
	roots    dataRoots            // the data as the store returns it (cache.go)
	seeds    *seeds               // the data-only rules, evaluated once (seed.go)
	strings  map[string]ast.Value // the strings of the data, shared by inputs (decide.go)
	// values keeps what a built-in prepares from a ground argument for
	// every decision of this bundle: the compiled JSON Schema of the
	// forms (json.match_schema in minimise.rego) is compiled once, not
	// once per decision.
	values cache.InterQueryValueCache
}

// Capabilities are this OPA version's, minus the built-ins that reach the
// network, the environment, the clock or randomness — a decision depends on
// its input and the policy data only, and can be reproduced — and minus the
// built-ins whose work no deadline interrupts and no policy needs
// (strings.render_template: a {{range}} of 10^11 never returns). The
// built-ins that remain are bounded as bounded.go says.
func Capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if forbiddenBuiltin(b.Name) {
			continue
		}
		kept = append(kept, b)
	}
	caps.Builtins = kept
	caps.AllowNet = []string{}
	return caps
}

func forbiddenBuiltin(name string) bool {
	switch name {
	case "http.send", "opa.runtime", "time.now_ns", "uuid.rfc4122", "trace",
		"providers.aws.sign_req", "strings.render_template":
		return true
	}
	return strings.HasPrefix(name, "net.") || strings.HasPrefix(name, "rand.")
}

// Compile loads every *.rego file (tests included) and every data.json of
// fsys, compiles them with the restricted capabilities, and prepares the
// serving query once. Test modules (*_test.rego) are compiled but left out
// of the serving query.
func Compile(ctx context.Context, fsys fs.FS, opts Options) (*Bundle, error) {
	opts = opts.withDefaults()
	files, err := readPolicyFiles(fsys)
	if err != nil {
		return nil, err
	}
	if opts.Cache != nil {
		return opts.Cache.compile(ctx, fsys, files, opts)
	}
	return compile(ctx, fsys, files, opts)
}

func compile(ctx context.Context, fsys fs.FS, files []policyFile, opts Options) (*Bundle, error) {
	b := &Bundle{
		Version:  digest(files),
		LoadedAt: time.Now().UTC(),
		fsys:     fsys,
		sources:  map[string]string{},
		data:     map[string]any{},
		opts:     opts,
	}
	for _, f := range files {
		switch {
		case strings.HasSuffix(f.path, ".rego"):
			b.sources[f.path] = string(f.content)
			b.Modules = append(b.Modules, f.path)
		default:
			if err := mountData(b.data, f.path, f.content); err != nil {
				return nil, err
			}
		}
	}
	b.strings = knownStrings(b.data)
	if len(b.Modules) == 0 {
		return nil, errors.New("policy: compile: no .rego files")
	}
	if err := ValidateData(ctx, b.data); err != nil {
		return nil, err
	}

	// Everything, tests included, must compile under the capabilities.
	all, err := b.parse(true)
	if err != nil {
		return nil, err
	}
	c := ast.NewCompiler().WithCapabilities(Capabilities()).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(all); c.Failed() {
		return nil, fmt.Errorf("policy: compile: %w", c.Errors)
	}

	// The serving modules, compiled as the rego package would prepare
	// them (type-check annotations, rules may not shadow data), and the
	// entrypoint compiled once as the query `result = data.xborder.decision`.
	serving, err := b.parse(false)
	if err != nil {
		return nil, err
	}
	store := b.store()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare: %w", err)
	}
	sc := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithDefaultRegoVersion(ast.RegoV1).
		WithUseTypeCheckAnnotations(true).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	sc.Compile(serving)
	store.Abort(ctx, txn)
	if sc.Failed() {
		return nil, fmt.Errorf("policy: prepare: %w", sc.Errors)
	}
	query, err := sc.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.MustParseTerm(Entrypoint))))
	if err != nil {
		return nil, fmt.Errorf("policy: prepare: %w", err)
	}
	b.compiler, b.query, b.docs = sc, query, store
	b.values = newValueCache(ctx)
	if b.roots, err = readDataRoots(ctx, store); err != nil {
		return nil, fmt.Errorf("policy: prepare: %w", err)
	}

	// The rules that read data only are evaluated once, here (seed.go).
	if b.seeds, err = seed(ctx, sc, store, seedTimeout(opts.Timeout)); err != nil {
		return nil, err
	}
	// Every JSON Schema is known now and refers to itself only (bounded.go).
	if err := checkSchemaCalls(c, b); err != nil {
		return nil, err
	}
	return b, nil
}

// parse parses the modules afresh (compilers may annotate what they get).
func (b *Bundle) parse(withTests bool) (map[string]*ast.Module, error) {
	out := map[string]*ast.Module{}
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	for p, src := range b.sources {
		if !withTests && isTestFile(p) {
			continue
		}
		m, err := ast.ParseModuleWithOpts(p, src, popts)
		if err != nil {
			return nil, fmt.Errorf("policy: parse: %w", err)
		}
		out[p] = m
	}
	return out, nil
}

func (b *Bundle) store() storage.Store {
	return inmem.NewFromObjectWithOpts(b.data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

func isTestFile(p string) bool { return strings.HasSuffix(p, "_test.rego") }

type policyFile struct {
	path    string
	content []byte
}

// readPolicyFiles returns the .rego and data.json files of fsys, sorted by
// path. Hidden directories are skipped.
func readPolicyFiles(fsys fs.FS) ([]policyFile, error) {
	var files []policyFile
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if err := linkInside(fsys, p); err != nil {
				return err
			}
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".rego") && d.Name() != DataFile {
			return nil
		}
		if err := regularFile(fsys, p); err != nil {
			return err
		}
		content, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, policyFile{path: p, content: content})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: read: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, nil
}

// Digest returns the version a bundle compiled from fsys would carry,
// without compiling it.
func Digest(fsys fs.FS) (string, error) {
	files, err := readPolicyFiles(fsys)
	if err != nil {
		return "", err
	}
	return digest(files), nil
}

func digest(files []policyFile) string {
	h := sha256.New()
	for _, f := range files {
		// Length-prefixed, so that no two file sets hash alike.
		fmt.Fprintf(h, "%d:%s\n%d:", len(f.path), f.path, len(f.content))
		h.Write(f.content)
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// mountData merges the JSON object of a data file at the path of its
// directory.
func mountData(root map[string]any, file string, content []byte) error {
	var obj map[string]any
	if err := util.UnmarshalJSON(content, &obj); err != nil {
		return fmt.Errorf("policy: data %s: %w", file, err)
	}
	if obj == nil {
		return fmt.Errorf("policy: data %s: not a JSON object", file)
	}
	node := root
	if dir := path.Dir(file); dir != "." {
		for _, seg := range strings.Split(dir, "/") {
			next, ok := node[seg].(map[string]any)
			if !ok {
				if _, exists := node[seg]; exists {
					return fmt.Errorf("policy: data %s: conflicts with data at %q", file, seg)
				}
				next = map[string]any{}
				node[seg] = next
			}
			node = next
		}
	}
	for k, v := range obj {
		if _, exists := node[k]; exists {
			return fmt.Errorf("policy: data %s: key %q defined twice", file, k)
		}
		node[k] = v
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
