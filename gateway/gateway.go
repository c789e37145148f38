// Package gateway assembles the stations of the road a message walks
// (envelope, trust, policy, exchange, store, delivery, api, console) from a
// validated configuration, runs the two listeners and the background jobs,
// and stops them in order. It holds assembly only: each station does its
// own work in its own package.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xborder/xborder/adapters/inbox"
	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/console"
	"github.com/xborder/xborder/gateway/delivery"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
	"github.com/xborder/xborder/gateway/ratelimit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/trust"
)

// Gateway is a configured, not yet running gateway.
type Gateway struct {
	cfg      config.Config
	log      *slog.Logger
	worker   worker.Options
	Registry *trust.Holder
	Policy   *policy.Engine
	Store    store.Store
	Keys     *Keys
	Exchange *exchange.Exchange
	Metrics  *api.Metrics
	Audit    *audit.Log
	Worker   *delivery.Worker
	Console  *console.Console

	consoleHistory *console.History
	certificates   *console.Certificates
	subjectQuota   *ratelimit.Limiter // subject reports, per participant (console.go)

	jobs []job          // started by Serve, each waited for by Close before the store closes
	bg   sync.WaitGroup // the jobs running

	api, ops     *http.Server
	apiLn, opsLn net.Listener
	closeOnce    sync.Once
	stopJobs     context.CancelFunc

	// damaged is the start-up check's problem with a store served all the
	// same (serve_damaged_store).
	damaged error
}

// job is a background job of a running gateway.
type job struct {
	name string
	run  func(context.Context)
}

// Option changes how New builds the gateway (for tests).
type Option func(*options)

type options struct {
	storeFault func(op string) error
	clock      func() time.Time
	inputs     console.InputsFunc // the console's generated inputs (WithImpactInputs)
	worker     worker.Options
	workerSet  bool // WithWorker given: its Idle stands as given
	compiled   *policy.CompileCache
}

// WithStoreFault makes the store ask fault inside each of its writes (op
// names it: "accept", "deny", "ack", "probe", …); an error fails that write
// before anything is committed, as a full disk or a failed audit append
// would. For tests that cannot fill a disk.
func WithStoreFault(fault func(op string) error) Option {
	return func(o *options) { o.storeFault = fault }
}

// WithClock gives the exchange another clock than time.Now (for tests of
// the time window: a late retry, an expired message).
func WithClock(clock func() time.Time) Option {
	return func(o *options) { o.clock = clock }
}

// WithWorker starts the worker processes of candidates and of a new
// bundle's tests with o (tests: the test binary, shorter deadlines).
func WithWorker(o worker.Options) Option {
	return func(opts *options) { opts.worker, opts.workerSet = o, true }
}

// WithCompileCache compiles the policy through c: gateways started in one
// process on the same policy compile it once (tests).
func WithCompileCache(c *policy.CompileCache) Option {
	return func(o *options) { o.compiled = c }
}

// New builds every component; nothing listens and no job runs yet. It
// checks every input first (Preflight) and makes nothing before they all
// pass: the development PKI, the operator token and the store's file are
// made only then, and a shared store is asked before the policy's tests
// run, so that a refusing or non-durable Redis is said at once.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (g *Gateway, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if err := Preflight(cfg); err != nil {
		return nil, err
	}
	o.worker.Logger = log
	if !o.workerSet {
		// Candidates run on processors live traffic does not want.
		o.worker.Idle = true
	}
	g = &Gateway{cfg: cfg, log: log, Metrics: api.NewMetrics(), worker: o.worker}
	gw := g // g is nil by the time a failed New's deferred calls run
	defer func() {
		if err != nil && gw.Store != nil {
			gw.Store.Close()
		}
	}()
	if kind, _ := cfg.StoreKind(); kind == "redis" {
		if err := g.openStore(ctx, o); err != nil {
			return nil, err
		}
	}
	if err := g.loadPolicy(ctx, o); err != nil {
		return nil, err
	}
	if err := devSetup(cfg, log); err != nil {
		return nil, err
	}
	token, err := opsToken(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := g.loadTrust(); err != nil {
		return nil, err
	}
	if g.Store == nil {
		if err := g.openStore(ctx, o); err != nil {
			return nil, err
		}
	}
	if err := g.checkStore(ctx); err != nil {
		return nil, err
	}
	if err := g.openAudit(); err != nil {
		return nil, err
	}
	if err = g.buildConsole(o); err != nil {
		return nil, err
	}
	box, err := g.buildRoad(o)
	if err != nil {
		return nil, err
	}
	if err = g.buildServers(box, token); err != nil {
		return nil, err
	}
	g.planJobs()
	return g, nil
}

// loadPolicy compiles the policy and runs its tests and scenarios (unless
// this program passed this version before: policy.Verdicts).
func (g *Gateway) loadPolicy(ctx context.Context, o options) (err error) {
	// The engine adds component=policy to its logger itself (one key per line).
	// A new bundle's tests run in a worker process (a test that never
	// ends is refused, not wedged).
	g.Policy, err = policy.NewEngine(ctx, os.DirFS(g.cfg.Policies), policy.Options{Timeout: g.cfg.PolicyTimeout, Logger: g.log,
		Verdicts: policy.Verdicts{Dir: g.cfg.VerdictDir()}, Vet: worker.Vet(g.vetWorker()), Cache: o.compiled})
	return err
}

// loadTrust reads the registry and the gateway's keys.
func (g *Gateway) loadTrust() error {
	reg, err := trust.Load(g.cfg.Registry)
	if err != nil {
		return err
	}
	g.Registry = trust.NewHolder(reg)
	g.Keys, err = LoadKeys(g.cfg.GatewayKeys)
	return err
}

// openStore opens the store, which keeps the audit chains too: one write
// path, whatever the backend (the store appends the audit entry of each of
// its changes atomically with it).
func (g *Gateway) openStore(ctx context.Context, o options) error {
	created := newStoreFile(g.cfg)
	var err error
	g.Store, err = OpenStore(ctx, g.cfg, StoreOptions{Replica: Replica(g.cfg), Logger: g.log, Fault: o.storeFault,
		OnQuarantine: func(kind string) { g.Metrics.Quarantined.WithLabelValues(kind).Inc() },
		OnReapplied:  func(op string) { g.Metrics.Reapplied.WithLabelValues(strings.ReplaceAll(op, " ", "_")).Inc() }})
	if err != nil {
		g.Store = nil
		return err
	}
	if created != "" {
		g.log.Info("store file created", "path", created)
	}
	g.Metrics.QueueDepths(g.Store.Depths)
	return nil
}

// openAudit makes the audit log on the store, with the gateway's keys.
func (g *Gateway) openAudit() error {
	subjectKey, err := audit.LoadOrCreateKey(filepath.Join(g.cfg.GatewayKeys, "audit.key"))
	if err == nil {
		g.Audit, err = audit.New(g.Store, audit.Options{Replica: Replica(g.cfg), Signer: g.Keys.Signing,
			SubjectKey: subjectKey, Logger: g.log}) // audit.New adds component=audit itself
	}
	if err != nil {
		return err
	}
	g.Registry.OnChange(g.registryChanged)
	return nil
}

// buildRoad makes the exchange, the inbox and the delivery worker.
func (g *Gateway) buildRoad(o options) (*inbox.Inbox, error) {
	cfg := g.cfg
	var err error
	g.Exchange, err = exchange.New(exchange.Options{
		Registry: g.Registry, Policy: g.Policy, Store: g.Store,
		SigningKey: g.Keys.Signing, DecryptionKeys: g.Keys.Encryption,
		Profile: envelope.Profile{
			AllowRSAOAEP256: cfg.AllowRSAOAEP256, AllowEdDSA: cfg.AllowEdDSA, ClockSkew: cfg.ClockSkew,
		},
		Clock:       o.clock,
		Logger:      g.log.With("component", "exchange"),
		OnDecision:  g.Metrics.Decision,
		Shadow:      g.Console.Observe,
		Audit:       g.Audit,
		MaxInflight: cfg.MaxInflight,
	})
	if err != nil {
		return nil, err
	}
	g.Worker, err = delivery.New(delivery.Options{
		Queue: g.Store, Registry: g.Registry, ClientCert: g.Keys.TLS,
		MaxAttempts: cfg.DeliveryAttempts, AttemptTimeout: cfg.DeliveryTimeout,
		Backoff: cfg.DeliveryBackoff, MaxBackoff: cfg.DeliveryMaxBackoff,
		Logger:    g.log.With("component", "delivery"),
		OnOutcome: func(o string) { g.Metrics.Deliveries.WithLabelValues(o).Inc() },
	})
	if err != nil {
		return nil, err
	}
	return &inbox.Inbox{Queue: g.Store, Visibility: cfg.InboxVisibility}, nil
}

// limiter is the per-sender rate limit, shared by every replica on a store
// that counts (Redis).
func (g *Gateway) limiter() *ratelimit.Limiter {
	l := &ratelimit.Limiter{
		Default:   ratelimit.Quota{Limit: g.cfg.RateLimit, Window: g.cfg.RateWindow},
		PerSender: map[string]ratelimit.Quota{},
		Counter:   &ratelimit.Memory{},
	}
	if c, ok := g.Store.(ratelimit.Counter); ok {
		l.Counter = c
	}
	for id, n := range g.cfg.RateLimits {
		l.PerSender[id] = ratelimit.Quota{Limit: n, Window: g.cfg.RateWindow}
	}
	return l
}

// buildServers makes the exchange API (mTLS) and the operator listener.
func (g *Gateway) buildServers(box *inbox.Inbox, token []byte) error {
	handler, err := api.New(api.Options{
		Exchange: g.Exchange, Registry: g.Registry, Inbox: box, Policy: g.Policy,
		JWKS: func() []byte { return g.Keys.JWKS }, BodyLimit: g.cfg.BodyLimit,
		Logger: g.log.With("component", "api"), Metrics: g.Metrics, Subject: g.SubjectReport,
		Limiter: g.limiter().Wait, ShadowReport: g.shadowReport, SubjectLimiter: g.subjectLimit,
	})
	if err != nil {
		return err
	}
	g.api = &http.Server{
		Handler: g.withConsole(handler),
		// The registry in force decides whom to trust, handshake by handshake.
		TLSConfig:         g.Registry.TLSConfig(g.Keys.TLS),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	g.ops = &http.Server{
		Handler: api.Ops(api.OpsOptions{Metrics: g.Metrics, Pprof: g.cfg.Pprof, DeadLetters: g.Store,
			Token: token, Subject: g.SubjectReport,
			AuditExport: func(ctx context.Context, w io.Writer) error {
				return audit.Export(ctx, g.Store, w, g.Keys.Signing)
			},
			Logger: g.log.With("component", "ops"), Checks: g.readiness()}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	return nil
}

// planJobs lists the background jobs Serve starts and Close waits for.
func (g *Gateway) planJobs() {
	cfg := g.cfg
	g.jobs = []job{
		{"delivery", g.Worker.Run},
		{"audit checkpoints", func(ctx context.Context) { g.Audit.Run(ctx, cfg.AuditCheckpoint) }},
		{"retention", func(ctx context.Context) {
			store.RunRetention(ctx, g.Store, cfg.PurgeEvery, g.log.With("component", "retention"))
		}},
	}
	if cfg.PolicyWatch > 0 {
		g.jobs = append(g.jobs,
			job{"policy watch", func(ctx context.Context) { g.Policy.Watch(ctx, cfg.Policies, cfg.PolicyWatch) }},
			job{"registry watch", func(ctx context.Context) {
				g.Registry.Watch(ctx, cfg.Registry, cfg.PolicyWatch, g.log.With("component", "trust"))
			}})
	}
}

func nilIf(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(msg)
}

// Listen opens both listeners (so that tests can use port 0 and read Addr).
func (g *Gateway) Listen() error {
	var err error
	if g.apiLn, err = net.Listen("tcp", g.cfg.Listen); err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	if g.opsLn, err = net.Listen("tcp", g.cfg.OpsListen); err != nil {
		g.apiLn.Close()
		return fmt.Errorf("gateway: ops listen: %w", err)
	}
	return nil
}

// Addr is the exchange API's address once listening.
func (g *Gateway) Addr() string { return g.apiLn.Addr().String() }

// OpsAddr is the operator listener's address once listening.
func (g *Gateway) OpsAddr() string { return g.opsLn.Addr().String() }

// Serve starts the jobs and the listeners and runs until ctx ends, then
// shuts down gracefully and closes the store.
func (g *Gateway) Serve(ctx context.Context) error {
	if g.apiLn == nil {
		if err := g.Listen(); err != nil {
			return err
		}
	}
	jctx, stop := context.WithCancel(ctx)
	g.stopJobs = stop
	for _, j := range g.jobs {
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			j.run(jctx)
		}()
	}
	errc := make(chan error, 2)
	go func() { errc <- g.api.Serve(tls.NewListener(g.apiLn, g.api.TLSConfig)) }()
	go func() { errc <- g.ops.Serve(g.opsLn) }()
	kind, _ := g.cfg.StoreKind()
	g.log.Info("gateway serving", "listen", g.Addr(), "ops_listen", g.OpsAddr(),
		"policy_version", g.Policy.Current().Version, "store", kind, "jobs", len(g.jobs))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the listeners (letting requests in flight finish), then the
// jobs (the final audit checkpoint is written), then closes the store.
func (g *Gateway) Close() {
	g.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if g.api != nil {
			_ = g.api.Shutdown(ctx)
		}
		if g.ops != nil {
			_ = g.ops.Shutdown(ctx)
		}
		if g.apiLn != nil {
			g.apiLn.Close()
		}
		if g.opsLn != nil {
			g.opsLn.Close()
		}
		if g.stopJobs != nil {
			g.stopJobs()
		}
		g.bg.Wait()
		if g.Store != nil {
			g.Store.Close()
		}
		g.log.Info("gateway stopped")
	})
}

// record appends e, an event that is not a change of the store (a policy
// or registry change or refusal), to the audit log. A failure is counted and
// logged (ids only).
func (g *Gateway) record(ctx context.Context, e audit.Entry) {
	if _, err := g.Audit.Record(ctx, e); err != nil {
		g.Metrics.AuditFailures.Inc()
		g.log.Error("audit append failed", "kind", e.Kind, "error", err)
	}
}

// registryChanged is the registry's OnChange hook: each reload, accepted or
// refused, is audited with the digest of the registry's files.
func (g *Gateway) registryChanged(_, _ *trust.Registry, err error) {
	e := audit.Entry{Kind: audit.KindRegistryReloaded, PayloadSHA256: trust.Digest(g.cfg.Registry)}
	var rf *trust.RefusedError
	if errors.As(err, &rf) {
		e.Kind, e.PayloadSHA256 = audit.KindRegistryRefused, rf.Digest
	}
	g.record(context.Background(), e)
}

// SubjectReport answers "who received what about this person" from the
// audit log (audit.Log.Subject).
func (g *Gateway) SubjectReport(ctx context.Context, ref string) (any, error) {
	return g.Audit.Subject(ctx, ref)
}

// Purge deletes the payloads whose retention period has ended by now, and
// the metadata of the messages past both their exp and their retention
// period (store.PurgeDue); the retention job calls it on its own every
// purge_every.
func (g *Gateway) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	return store.PurgeDue(ctx, g.Store, now, g.log.With("component", "retention"))
}

// vetWorker is the worker of the tests a new bundle must pass before it
// serves: never in SCHED_IDLE, since they must finish however busy the
// machine is (they are bounded by their deadline all the same).
func (g *Gateway) vetWorker() worker.Options {
	o := g.worker
	o.Idle = false
	return o
}
