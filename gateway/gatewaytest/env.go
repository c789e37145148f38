// Package gatewaytest starts a real gateway for tests: a throwaway PKI for
// the demo federation, the repository's policies, the embedded store in a
// temporary folder, and the exchange API over mTLS on 127.0.0.1:0.
package gatewaytest

import (
	"bytes"
	"context"
	"io"
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

var sharedVerdicts struct {
	once sync.Once
	dir  string
}

// verdicts is one folder of remembered policy verdicts for every gateway
// this test process starts: the repository's policy is tested by the first
// one (and by gateway/policy's own tests), not again by each.
func verdicts() string {
	sharedVerdicts.once.Do(func() {
		dir, err := os.MkdirTemp("", "xborder-test-verdicts-")
		if err != nil {
			sharedVerdicts.dir = "off"
			return
		}
		sharedVerdicts.dir = dir
	})
	return sharedVerdicts.dir
}

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
	if err := pki.Init(pki.Options{Dir: pkiDir, Participants: specs}); err != nil {
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
	opts = append([]gateway.Option{gateway.WithWorker(worker.Options{})}, opts...)
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
// (worker.RunIfChild), and the folder of remembered verdicts it shared
// between them goes with it, so that no run leaves files behind.
func Main(m *testing.M) int {
	worker.RunIfChild()
	code := m.Run()
	if d := sharedVerdicts.dir; d != "" && d != "off" {
		os.RemoveAll(d)
	}
	return code
}
