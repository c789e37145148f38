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

// OpenStore opens the store the configuration names.
func OpenStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	kind, target := cfg.StoreKind()
	switch kind {
	case "bolt":
		return boltstore.Open(target, boltstore.Options{})
	case "redis":
		return redisstore.Open(ctx, target, redisstore.Options{RequireDurable: cfg.RedisRequireDurable})
	}
	return nil, fmt.Errorf("gateway: unknown store %q", cfg.Store)
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

	auditBackend   audit.Backend
	consoleHistory *console.History
	certificates   *console.Certificates
	bg             sync.WaitGroup // background jobs, waited for before the stores close

	api, ops     *http.Server
	apiLn, opsLn net.Listener
	closeOnce    sync.Once
	stopWatch    context.CancelFunc
}

// New builds every component; nothing listens yet.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (g *Gateway, err error) {
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
	if g.Store, err = OpenStore(ctx, cfg); err != nil {
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
	g.Metrics = api.NewMetrics()
	g.Metrics.QueueDepths(g.Store.Depths)
	boltStore, onBolt := g.Store.(*boltstore.Store)
	if onBolt {
		// The audit log lives in the store's file: an acceptance and its
		// entry are one transaction and one fsync (journal below).
		legacy := audit.LegacyBoltPath(boltStore.Path())
		if _, serr := os.Stat(legacy); serr == nil {
			return nil, fmt.Errorf("gateway: %s is an audit log of an earlier version; the audit log is now kept in %s: "+
				"verify and export it with that version, then move it out of this folder", legacy, boltStore.Path())
		}
		g.auditBackend, err = audit.NewBoltOn(boltStore, boltStore.Path())
	} else {
		g.auditBackend, err = audit.OpenBackend(ctx, cfg.Store, false)
	}
	if err != nil {
		return nil, err
	}
	ab := g.auditBackend
	defer func() {
		if err != nil {
			ab.Close()
		}
	}()
	subjectKey, err := audit.LoadOrCreateKey(filepath.Join(cfg.GatewayKeys, "audit.key"))
	if err != nil {
		return nil, err
	}
	replica := cfg.Replica
	if replica == "" {
		if replica, err = os.Hostname(); err != nil || replica == "" {
			replica = "gateway"
		}
	}
	g.Audit, err = audit.New(g.auditBackend, audit.Options{Replica: replica, Signer: g.Keys.Signing,
		SubjectKey: subjectKey, Logger: log}) // audit.New adds component=audit itself
	if err != nil {
		return nil, err
	}
	if err = g.buildConsole(); err != nil {
		return nil, err
	}
	var jr exchange.Journal // nil unless on bolt: not a nil *journal in an interface
	journal := journalFor(boltStore, g.Audit, g.Metrics)
	if journal != nil {
		jr = journal
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
		Audit:       auditor{g.Audit, g.Metrics},
		Journal:     jr,
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
	box := &inbox.Inbox{Queue: g.Store, Visibility: cfg.InboxVisibility,
		OnAck: func(ctx context.Context, d store.Delivery) { g.recordDelivery(ctx, d, audit.KindDelivered) }}
	if journal != nil {
		// The acknowledgement and its "delivered" entry in one transaction.
		box.Queue, box.OnAck = journal.queue(), nil
	}
	wo := delivery.Options{
		Queue: g.Store, Registry: g.Registry, ClientCert: g.Keys.TLS,
		MaxAttempts: cfg.DeliveryAttempts, AttemptTimeout: cfg.DeliveryTimeout,
		Backoff: cfg.DeliveryBackoff, MaxBackoff: cfg.DeliveryMaxBackoff,
		Logger:    log.With("component", "delivery"),
		OnOutcome: func(o string) { g.Metrics.Deliveries.WithLabelValues(o).Inc() },
		OnFinal: func(ctx context.Context, d store.Delivery, outcome string) {
			kind := audit.KindDelivered
			if outcome == "dead_lettered" {
				kind = audit.KindDeadLettered
			}
			g.recordDelivery(ctx, d, kind)
		},
	}
	if journal != nil {
		// A delivery's end and its entry in one transaction.
		wo.Queue, wo.OnFinal = journal.queue(), nil
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
				return audit.Export(ctx, g.auditBackend, w, g.Keys.Signing)
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
		go g.watchRegistry(wctx, g.cfg.PolicyWatch)
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

// auditor counts audit failures beside the exchange's own logging.
type auditor struct {
	log *audit.Log
	m   *api.Metrics
}

func (a auditor) Record(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	out, err := a.log.Record(ctx, e)
	if err != nil {
		a.m.AuditFailures.Inc()
	}
	return out, err
}

func (a auditor) SubjectHash(ref string) string { return a.log.SubjectHash(ref) }

// recordDelivery audits a delivery's end (delivered or dead-lettered).
func (g *Gateway) recordDelivery(ctx context.Context, d store.Delivery, kind string) {
	m, err := g.Store.Message(ctx, d.MessageFrom, d.MessageID)
	if err != nil {
		m = nil
	}
	g.record(ctx, deliveryEntry(d, m, kind), "delivery_id", d.ID)
}

// record appends e to the audit log. A failure is counted and logged (ids
// only, with attrs) and does not undo what e records.
func (g *Gateway) record(ctx context.Context, e audit.Entry, attrs ...any) {
	if _, err := (auditor{g.Audit, g.Metrics}).Record(ctx, e); err != nil {
		g.log.Error("audit append failed", append([]any{"kind", e.Kind, "message_id", e.MessageID, "error", err}, attrs...)...)
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

// deliveryEntry is the audit entry of a delivery's end; m is its message,
// if still known.
func deliveryEntry(d store.Delivery, m *store.Message, kind string) audit.Entry {
	e := audit.Entry{Kind: kind, MessageID: d.MessageID, From: d.MessageFrom, To: d.Recipient}
	if m != nil {
		e.DecisionID, e.PolicyVersion, e.Purpose, e.Type = m.DecisionID, m.PolicyVersion, m.Purpose, m.Type
	}
	sum := sha256.Sum256(d.Envelope)
	e.PayloadSHA256 = hex.EncodeToString(sum[:])
	return e
}

// SubjectReport answers "who received what about this person" from the
// audit log: for one subject reference, each decision about it — recipient,
// purpose, data categories delivered, time, decision — without any data.
func (g *Gateway) SubjectReport(ctx context.Context, ref string) (any, error) {
	h := g.Audit.SubjectHash(ref)
	entries, err := audit.Subject(ctx, g.auditBackend, h)
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
// ended by now, keeps their metadata, and audits each purge.
func (g *Gateway) Purge(ctx context.Context, now time.Time) ([]store.Purged, error) {
	purged, err := g.Store.Purge(ctx, now)
	for _, p := range purged {
		e := audit.Entry{Kind: audit.KindPurged, MessageID: p.ID, From: p.From}
		if m, merr := g.Store.Message(ctx, p.From, p.ID); merr == nil {
			e.To, e.DecisionID, e.PolicyVersion, e.Purpose, e.Type = m.To, m.DecisionID, m.PolicyVersion, m.Purpose, m.Type
		}
		g.record(ctx, e)
	}
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
// registry in force keeps serving.
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
			return
		}
		g.log.Info("registry reloaded", "participants", len(g.Registry.Load().Participants()))
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
		g.bg.Wait() // the final audit checkpoint is written before the stores close
		if g.auditBackend != nil {
			g.auditBackend.Close()
		}
		if g.Store != nil {
			g.Store.Close()
		}
		g.log.Info("gateway stopped")
	})
}
