// Package gatewaytest starts a real gateway for tests: a throwaway PKI for
// the demo federation, the repository's policies, the embedded store in a
// temporary folder, and the exchange API over mTLS on 127.0.0.1:0.
package gatewaytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// TestPolicyTimeout bounds one policy decision in test gateways.
const TestPolicyTimeout = 30 * time.Second

// Env is a running gateway and the material to talk to it.
type Env struct {
	T       testing.TB
	PKI     string // the PKI folder (ca.crt, <ID>/..., registry.yaml)
	Config  config.Config
	Gateway *gateway.Gateway
	Logs    *SyncBuffer // everything the gateway logged, JSON lines

	mu      sync.Mutex
	clients map[string]*client.Client
	cancel  context.CancelFunc
	done    chan error
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RepoRoot is the repository's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// shared is one temporary folder for what the gateways of this test
// process share (remembered verdicts, PKI templates); Main removes it.
var shared struct {
	once sync.Once
	dir  string
	err  error
}

func processDir() (string, error) {
	shared.once.Do(func() { shared.dir, shared.err = os.MkdirTemp("", "xborder-test-") })
	return shared.dir, shared.err
}

// verdicts is one folder of remembered policy verdicts for every gateway
// this test process starts: the repository's policy is tested by the first
// one (and by gateway/policy's own tests), not again by each.
func verdicts() string {
	dir, err := processDir()
	if err != nil {
		return "off"
	}
	return filepath.Join(dir, "verdicts")
}

// pkiTemplates holds, per list of participants, one PKI this process
// generated (the keys and PKCS#12 files are most of a gateway's start in
// tests); each test gets its own copy, which it may rotate or edit.
var pkiTemplates sync.Map // JSON of the specs → *pkiTemplate

type pkiTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// makePKI writes the PKI of specs into dst, a folder that does not exist
// yet: a copy of the one this process made for the same specs.
func makePKI(dst string, specs []pki.Spec) error {
	key, err := json.Marshal(specs)
	if err != nil {
		return err
	}
	v, _ := pkiTemplates.LoadOrStore(string(key), &pkiTemplate{})
	tpl := v.(*pkiTemplate)
	tpl.once.Do(func() {
		root, err := processDir()
		if err != nil {
			tpl.err = err
			return
		}
		sum := sha256.Sum256(key)
		tpl.dir = filepath.Join(root, "pki-"+hex.EncodeToString(sum[:8]))
		tpl.err = pki.Init(pki.Options{Dir: tpl.dir, Participants: specs})
	})
	if tpl.err != nil {
		return tpl.err
	}
	return copyTree(tpl.dir, dst)
}

// copyTree copies the folder src to dst with the same permissions (the
// private keys and the operator token stay 0600).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		default:
			return fmt.Errorf("gatewaytest: unexpected file %s in the PKI", p)
		}
	})
}

// compileCache is the compiled policy the gateways of this process share.
var compileCache policy.CompileCache

// Option changes the configuration before the gateway starts.
type Option func(*config.Config)

// Start makes a PKI for the demo federation and starts a gateway; it stops
// when the test ends.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	return StartFederation(t, pki.DemoFederation(), opts...)
}

// StartFederation is Start with the given participants (for instance with
// a push recipient).
func StartFederation(t testing.TB, specs []pki.Spec, opts ...Option) *Env {
	t.Helper()
	pkiDir, cfg := Config(t, specs, opts...)
	return StartWith(t, pkiDir, cfg)
}

// Config makes a PKI for the participants and the configuration Start
// would run with, without starting anything: for StartWith with gateway
// options.
func Config(t testing.TB, specs []pki.Spec, opts ...Option) (pkiDir string, cfg config.Config) {
	t.Helper()
	dir := t.TempDir()
	pkiDir = filepath.Join(dir, "pki")
	if err := makePKI(pkiDir, specs); err != nil {
		t.Fatalf("pki: %v", err)
	}
	cfg = config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.OpsListen = "127.0.0.1:0"
	cfg.Registry = filepath.Join(pkiDir, "registry.yaml")
	cfg.GatewayKeys = filepath.Join(pkiDir, "gateway")
	cfg.Policies = filepath.Join(RepoRoot(), "policies")
	cfg.Store = "bolt:" + filepath.Join(dir, "data", "xborder.db")
	// Each gateway its own journal (used on a redis-sentinel:// store).
	cfg.RedisJournal = filepath.Join(dir, "data", "redis-journal.db")
	cfg.PolicyWatch = 0
	cfg.PolicyVerdicts = verdicts()
	// A generous deadline per decision: the production default is short on
	// purpose, and a loaded test machine must not turn a slow decision into
	// a denial (tests of the deadline itself set their own).
	cfg.PolicyTimeout = TestPolicyTimeout
	cfg.DevPKI = ""
	cfg.OpsTokenFile = filepath.Join(pkiDir, pki.OpsTokenFile)
	cfg.LogLevel = "debug"
	for _, o := range opts {
		o(&cfg)
	}
	return pkiDir, cfg
}

// StartWith starts a gateway on an existing PKI folder and configuration.
func StartWith(t testing.TB, pkiDir string, cfg config.Config, opts ...gateway.Option) *Env {
	t.Helper()
	logs := &SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	// Test gateways run their candidates' workers at normal priority
	// (a test's own WithWorker, later in opts, says otherwise): beside the
	// other packages' tests on a busy machine, SCHED_IDLE would leave a
	// candidate little but its deadline.
	// They compile the policy once per process (policy.CompileCache).
	opts = append([]gateway.Option{gateway.WithWorker(worker.Options{}), gateway.WithCompileCache(&compileCache)}, opts...)
	g, err := gateway.New(ctx, cfg, log, opts...)
	if err != nil {
		cancel()
		t.Fatalf("gateway: %v", err)
	}
	if err := g.Listen(); err != nil {
		cancel()
		g.Close()
		t.Fatalf("listen: %v", err)
	}
	e := &Env{T: t, PKI: pkiDir, Config: cfg, Gateway: g, Logs: logs,
		clients: map[string]*client.Client{}, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- g.Serve(ctx) }()
	t.Cleanup(e.Stop)
	return e
}

// Stop stops the gateway and waits for it.
func (e *Env) Stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		e.T.Errorf("gateway did not stop")
	}
	e.cancel = nil
	// Every line the gateway logged is one JSON object without a repeated
	// key: strict JSON consumers drop a line with a duplicate key.
	if err := CheckLogLines([]byte(e.Logs.String())); err != nil {
		e.T.Errorf("gateway log: %v", err)
	}
}

// URL is the exchange API's base URL.
func (e *Env) URL() string { return "https://" + e.Gateway.Addr() }

// OpsURL is the operator listener's base URL.
func (e *Env) OpsURL() string { return "http://" + e.Gateway.OpsAddr() }

// OpsToken is the operator token of the gateway's ops_token_file.
func (e *Env) OpsToken() string {
	e.T.Helper()
	tok, err := pki.ReadOpsToken(e.Config.OpsTokenFile)
	if err != nil {
		e.T.Fatalf("ops token: %v", err)
	}
	return string(tok)
}

// Ops calls the operator listener with the operator token.
func (e *Env) Ops(method, path string, body io.Reader) (*http.Response, error) {
	e.T.Helper()
	req, err := http.NewRequest(method, e.OpsURL()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.OpsToken())
	return http.DefaultClient.Do(req)
}

// Client is a client acting as participant id (cached).
func (e *Env) Client(id string) *client.Client {
	e.T.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[id]; ok {
		return c
	}
	me, err := client.LoadIdentity(e.PKI, id)
	if err != nil {
		e.T.Fatalf("identity %s: %v", id, err)
	}
	c := client.New(e.URL(), me)
	e.clients[id] = c
	return c
}

// Message builds a fresh message (new id, iat now, exp in 5 minutes).
func Message(from, to, typ, purpose string, body map[string]any) map[string]any {
	now := time.Now().Unix()
	m := map[string]any{
		"id": uuid.NewString(), "type": typ, "from": from, "to": to, "purpose": purpose,
		"legal_basis": "agreement on file", "iat": now, "exp": now + 300,
	}
	for k, v := range body {
		m[k] = v
	}
	return m
}

// ChildSubject is a subject under 18 with the given canary names.
func ChildSubject(primary, secondary string) map[string]any {
	return map[string]any{
		"ref":                 "S-" + strings.ToUpper(uuid.NewString()[:8]),
		"names":               map[string]any{"primary": primary, "secondary": secondary},
		"birth_date":          time.Now().AddDate(-8, 0, 0).Format("2006-01-02"),
		"birth_date_basis":    "document",
		"sex":                 "F",
		"nationality_claimed": "KAZ",
		"location":            map[string]any{"country": "SYR", "facility_type": "camp"},
	}
}

// Main is the TestMain of a test binary that starts gateways: the binary
// can be the worker process of its gateways' candidates and policy tests
// (worker.RunIfChild), and the folder of what it shared between them
// (remembered verdicts, PKI templates) goes with it, so that no run leaves
// files behind.
func Main(m *testing.M) int {
	worker.RunIfChild()
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	return code
}
