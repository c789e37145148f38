// Package gateway assembles the stations of the road a message walks
// (envelope, trust, policy, exchange, store, api) from a validated
// configuration and runs the two listeners.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
	"github.com/xborder/xborder/gateway/ratelimit"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
	redisstore "github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/trust"
)

// Keys is the gateway's own material (PROTOCOL §8 `gateway/`).
type Keys struct {
	TLS        tls.Certificate
	Signing    *envelope.PrivateKey
	Encryption []*envelope.PrivateKey // current first, then older ones still opened during a rotation
	JWKS       []byte
}

// LoadKeys reads tls.crt, tls.key, sign.jwk and enc.jwk from dir. Older
// encryption keys kept for a rotation overlap are read from enc.*.jwk.
func LoadKeys(dir string) (*Keys, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	sign, err := envelope.LoadPrivateJWK(filepath.Join(dir, "sign.jwk"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	enc, err := envelope.LoadPrivateJWK(filepath.Join(dir, "enc.jwk"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	k := &Keys{TLS: cert, Signing: sign, Encryption: []*envelope.PrivateKey{enc}}
	// Earlier encryption keys still opened during a rotation overlap
	// (enc.<kid>.jwk) and earlier signing keys whose public halves keep old
	// receipts verifiable (sign.<kid>.pub.jwk): see pki.RotateGateway.
	for _, p := range retired(dir, "enc.*.jwk", "enc.pub.jwk") {
		ok, err := envelope.LoadPrivateJWK(p)
		if err != nil {
			return nil, fmt.Errorf("gateway: keys: %w", err)
		}
		k.Encryption = append(k.Encryption, ok)
	}
	pubs := []*envelope.PublicKey{sign.Public()}
	for _, e := range k.Encryption {
		pubs = append(pubs, e.Public())
	}
	for _, p := range retired(dir, "sign.*.pub.jwk", "sign.pub.jwk") {
		pk, err := envelope.LoadPublicJWK(p)
		if err != nil {
			return nil, fmt.Errorf("gateway: keys: %w", err)
		}
		pubs = append(pubs, pk)
	}
	k.JWKS, err = envelope.MarshalJWKS(pubs...)
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	return k, nil
}

// retired lists the files of dir matching pattern, but current.
func retired(dir, pattern, current string) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	out := paths[:0]
	for _, p := range paths {
		if filepath.Base(p) != current {
			out = append(out, p)
		}
	}
	return out
}

// StoreOptions say how OpenStore opens the store.
type StoreOptions struct {
	// Replica names this gateway's audit chain, where the store appends the
	// entries of its changes (Replica, below, for a running gateway).
	Replica string
	// ReadOnly opens it for reading only (the audit and store commands): an
	// embedded store is then opened beside no running gateway.
	ReadOnly bool
	// Logger and OnQuarantine report records the store quarantines.
	Logger       *slog.Logger
	OnQuarantine func(kind string)
	// Fault is the stores' fault injection (bolt.Options.Fault,
	// redis.Options.Fault), for tests: WithStoreFault.
	Fault func(op string) error
}

// OpenStore opens the store the configuration names. It is also the audit
// log's backend: the chains live in it.
func OpenStore(ctx context.Context, cfg config.Config, o StoreOptions) (store.Store, error) {
	kind, target := cfg.StoreKind()
	switch kind {
	case "bolt":
		if !o.ReadOnly {
			legacy := audit.LegacyBoltPath(target)
			if _, err := os.Stat(legacy); err == nil {
				return nil, fmt.Errorf("gateway: %s is an audit log of an earlier version; the audit log is now kept in %s: "+
					"verify and export it with that version, then move it out of this folder", legacy, target)
			}
		}
		return boltstore.Open(target, boltstore.Options{Replica: o.Replica, ReadOnly: o.ReadOnly,
			Logger: o.Logger, OnQuarantine: o.OnQuarantine, Fault: o.Fault})
	case "redis":
		return redisstore.Open(ctx, target, redisstore.Options{RequireDurable: cfg.RedisRequireDurable && !o.ReadOnly,
			Replica: o.Replica, Logger: o.Logger, OnQuarantine: o.OnQuarantine, Fault: o.Fault})
	}
	return nil, fmt.Errorf("gateway: unknown store %q", cfg.Store)
}

// Replica is the name of this gateway's audit chain: the configured one,
// else the host name.
func Replica(cfg config.Config) string {
	if cfg.Replica != "" {
		return cfg.Replica
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "gateway"
}

// Gateway is a configured, not yet running gateway.
type Gateway struct {
	cfg      config.Config
	log      *slog.Logger
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
	bg             sync.WaitGroup // background jobs, waited for before the store closes

	api, ops     *http.Server
	apiLn, opsLn net.Listener
	closeOnce    sync.Once
	stopWatch    context.CancelFunc
}

// Option changes how New builds a gateway (for tests).
type Option func(*options)

type options struct {
	storeFault func(op string) error
}

// WithStoreFault makes the store ask fault inside each of its writes (op
// names it: "accept", "deny", "ack", "probe", …); an error fails that write
// before anything is committed, as a full disk or a failed audit append
// would. For tests that cannot fill a disk.
func WithStoreFault(fault func(op string) error) Option {
	return func(o *options) { o.storeFault = fault }
}

// New builds every component; nothing listens yet.
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
	if err := devSetup(cfg, log); err != nil {
		return nil, err
	}
	token, err := opsToken(cfg, log)
	if err != nil {
		return nil, err
	}
	g = &Gateway{cfg: cfg, log: log}
	reg, err := trust.Load(cfg.Registry)
	if err != nil {
		return nil, err
	}
	g.Registry = trust.NewHolder(reg)
	if g.Keys, err = LoadKeys(cfg.GatewayKeys); err != nil {
		return nil, err
	}
	// The engine adds component=policy to its logger itself (one key per line).
	g.Policy, err = policy.NewEngine(ctx, os.DirFS(cfg.Policies), policy.Options{Timeout: cfg.PolicyTimeout, Logger: log,
		Verdicts: policy.Verdicts{Dir: cfg.VerdictDir()}})
	if err != nil {
		return nil, err
	}
	created := newStoreFile(cfg)
	g.Metrics = api.NewMetrics()
	replica := Replica(cfg)
	// One write path, whatever the backend: the store appends the audit
	// entry of each of its changes (an acceptance, a denial, a delivery's
	// end, a purge) atomically with it, and keeps the chain (audit.Backend).
	g.Store, err = OpenStore(ctx, cfg, StoreOptions{Replica: replica, Logger: log, Fault: o.storeFault,
		OnQuarantine: func(kind string) { g.Metrics.Quarantined.WithLabelValues(kind).Inc() }})
	if err != nil {
		return nil, err
	}
	if created != "" {
		log.Info("store file created", "path", created)
	}
	// g is nil by the time a failed New's deferred calls run.
	st := g.Store
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	g.Metrics.QueueDepths(g.Store.Depths)
	subjectKey, err := audit.LoadOrCreateKey(filepath.Join(cfg.GatewayKeys, "audit.key"))
	if err != nil {
		return nil, err
	}
	g.Audit, err = audit.New(g.Store, audit.Options{Replica: replica, Signer: g.Keys.Signing,
		SubjectKey: subjectKey, Logger: log}) // audit.New adds component=audit itself
	if err != nil {
		return nil, err
	}
	if err = g.buildConsole(); err != nil {
		return nil, err
	}
	g.Exchange, err = exchange.New(exchange.Options{
		Registry: g.Registry, Policy: g.Policy, Store: g.Store,
		SigningKey: g.Keys.Signing, DecryptionKeys: g.Keys.Encryption,
		Profile: envelope.Profile{
			AllowRSAOAEP256: cfg.AllowRSAOAEP256, AllowEdDSA: cfg.AllowEdDSA, ClockSkew: cfg.ClockSkew,
		},
		Logger:      log.With("component", "exchange"),
		OnDecision:  g.Metrics.Decision,
		Shadow:      g.Console.Observe,
		Audit:       g.Audit,
		MaxInflight: cfg.MaxInflight,
	})
	if err != nil {
		return nil, err
	}
	limiter := &ratelimit.Limiter{
		Default:   ratelimit.Quota{Limit: cfg.RateLimit, Window: cfg.RateWindow},
		PerSender: map[string]ratelimit.Quota{},
		Counter:   &ratelimit.Memory{},
	}
	if c, ok := g.Store.(ratelimit.Counter); ok {
		limiter.Counter = c // shared by every replica on this store
	}
	for id, n := range cfg.RateLimits {
		limiter.PerSender[id] = ratelimit.Quota{Limit: n, Window: cfg.RateWindow}
	}
	box := &inbox.Inbox{Queue: g.Store, Visibility: cfg.InboxVisibility}
	wo := delivery.Options{
		Queue: g.Store, Registry: g.Registry, ClientCert: g.Keys.TLS,
		MaxAttempts: cfg.DeliveryAttempts, AttemptTimeout: cfg.DeliveryTimeout,
		Backoff: cfg.DeliveryBackoff, MaxBackoff: cfg.DeliveryMaxBackoff,
		Logger:    log.With("component", "delivery"),
		OnOutcome: func(o string) { g.Metrics.Deliveries.WithLabelValues(o).Inc() },
	}
	g.Worker, err = delivery.New(wo)
	if err != nil {
		return nil, err
	}
	handler, err := api.New(api.Options{
		Exchange: g.Exchange, Registry: g.Registry, Inbox: box, Policy: g.Policy,
		JWKS: func() []byte { return g.Keys.JWKS }, BodyLimit: cfg.BodyLimit,
		Logger: log.With("component", "api"), Metrics: g.Metrics, Subject: g.SubjectReport,
		Limiter: limiter.Wait, ShadowReport: g.shadowReport,
	})
	if err != nil {
		return nil, err
	}
	serverCert := g.Keys.TLS
	g.api = &http.Server{
		Handler: g.withConsole(handler),
		// The registry in force decides whom to trust, handshake by handshake.
		TLSConfig:         g.Registry.TLSConfig(serverCert),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	g.ops = &http.Server{
		Handler: api.Ops(api.OpsOptions{Metrics: g.Metrics, Pprof: cfg.Pprof, DeadLetters: g.Store,
			Token: token, Subject: g.SubjectReport,
			AuditExport: func(ctx context.Context, w io.Writer) error {
				return audit.Export(ctx, g.Store, w, g.Keys.Signing)
			},
			Logger: log.With("component", "ops"), Checks: map[string]api.Check{
				"store":  g.Store.Ping,
				"policy": func(context.Context) error { return nilIf(g.Policy.Current() != nil, "no policy loaded") },
				"keys": func(context.Context) error {
					return nilIf(g.Keys.Signing != nil && len(g.Keys.Encryption) > 0, "no keys")
				},
			}}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	return g, nil
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

// Serve runs until ctx ends, then shuts down gracefully and closes the store.
func (g *Gateway) Serve(ctx context.Context) error {
	if g.apiLn == nil {
		if err := g.Listen(); err != nil {
			return err
		}
	}
	wctx, stop := context.WithCancel(ctx)
	g.stopWatch = stop
	if g.cfg.PolicyWatch > 0 {
		go g.Policy.Watch(wctx, g.cfg.Policies, g.cfg.PolicyWatch)
		g.background(wctx, func(ctx context.Context) { g.watchRegistry(ctx, g.cfg.PolicyWatch) }) // it appends to the audit log: waited for before the store closes
	}
	g.background(wctx, func(ctx context.Context) { g.Worker.Run(ctx) })
	g.background(wctx, func(ctx context.Context) { g.Audit.Run(ctx, g.cfg.AuditCheckpoint) })
	g.background(wctx, g.purgeLoop)
	errc := make(chan error, 2)
	go func() { errc <- g.api.Serve(tls.NewListener(g.apiLn, g.api.TLSConfig)) }()
	go func() { errc <- g.ops.Serve(g.opsLn) }()
	g.log.Info("gateway serving", "listen", g.Addr(), "ops_listen", g.OpsAddr(),
		"policy_version", g.Policy.Current().Version, "store", storeKind(g.cfg))
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

func (g *Gateway) background(ctx context.Context, f func(context.Context)) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		f(ctx)
	}()
}

// record appends e, an event that is not a change of the store (a policy
// or registry change or refusal), to the audit log. A failure is counted and logged
// (ids only, with attrs).
func (g *Gateway) record(ctx context.Context, e audit.Entry, attrs ...any) {
	if _, err := g.Audit.Record(ctx, e); err != nil {
		g.Metrics.AuditFailures.Inc()
		g.log.Error("audit append failed", append([]any{"kind", e.Kind, "error", err}, attrs...)...)
	}
}

// onTick calls fn every d until ctx ends.
func onTick(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// SubjectReport answers "who received what about this person" from the
// audit log: for one subject reference, each decision about it — recipient,
// purpose, data categories delivered, time, decision — without any data.
func (g *Gateway) SubjectReport(ctx context.Context, ref string) (any, error) {
	h := g.Audit.SubjectHash(ref)
	entries, err := audit.Subject(ctx, g.Store, h)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []audit.Entry{}
	}
	return map[string]any{"subject_hash": h, "entries": entries}, nil
}

// purgeLoop deletes stored payloads whose retention period ended (R13).
func (g *Gateway) purgeLoop(ctx context.Context) {
	purge := func() {
		if _, err := g.Purge(ctx, time.Now()); err != nil && ctx.Err() == nil {
			g.log.Error("retention purge failed", "error", err)
		}
	}
	purge()
	onTick(ctx, g.cfg.PurgeEvery, purge)
}

// Purge deletes the payloads of every message whose retention period has
// ended by now and keeps their metadata; the store appends each purge's
// audit entry with it.
func (g *Gateway) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	purged, err := g.Store.Purge(ctx, now)
	if len(purged) > 0 {
		g.log.Info("retention purge", "messages", len(purged))
		// Deleted pages still hold the old bytes until they are rewritten.
		if c, ok := g.Store.(interface{ Compact(context.Context) error }); ok {
			if cerr := c.Compact(ctx); cerr != nil {
				g.log.Error("compaction after purge failed", "error", cerr)
				err = errors.Join(err, cerr)
			}
		}
	}
	return purged, err
}

// watchRegistry reloads the trust registry when its file changes (a
// participant's key rotation, a suspension); a bad file is refused and the
// registry in force keeps serving. Both are audited (Append: not a change
// of the store).
func (g *Gateway) watchRegistry(ctx context.Context, every time.Duration) {
	last := fileDigest(g.cfg.Registry)
	onTick(ctx, every, func() {
		d := fileDigest(g.cfg.Registry)
		if d == last {
			return
		}
		last = d
		if err := g.Registry.Reload(g.cfg.Registry); err != nil {
			g.log.Error("registry change refused; the previous registry keeps serving", "error", err)
			g.record(ctx, audit.Entry{Kind: audit.KindRegistryRefused, PayloadSHA256: d})
			return
		}
		g.log.Info("registry reloaded", "participants", len(g.Registry.Load().Participants()))
		g.record(ctx, audit.Entry{Kind: audit.KindRegistryReloaded, PayloadSHA256: d})
	})
}

// fileDigest hashes a file and the files it names alongside it (keys and
// certificates live beside the registry), so that a replaced key is seen.
func fileDigest(path string) string {
	h := sha256.New()
	_ = filepath.WalkDir(filepath.Dir(path), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		ext := filepath.Ext(p)
		if ext != ".yaml" && ext != ".jwk" && ext != ".crt" && ext != ".pem" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		h.Write([]byte(p))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

func storeKind(c config.Config) string { k, _ := c.StoreKind(); return k }

// Close stops the listeners (letting requests in flight finish) and closes the store.
func (g *Gateway) Close() {
	g.closeOnce.Do(func() {
		if g.stopWatch != nil {
			g.stopWatch()
		}
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
		g.bg.Wait() // the final audit checkpoint is written before the store closes
		if g.Store != nil {
			g.Store.Close()
		}
		g.log.Info("gateway stopped")
	})
}
