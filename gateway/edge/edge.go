// Package edge is a participant's own gateway (`xborder edge`, issue 21):
// it runs in the participant's network, holds its keys, and lets the
// participant's systems exchange plain JSON with the hub. It signs and
// seals what they post to its outbox, sends it with retries of the same
// bytes, verifies the hub's receipts, pulls the participant's inbox from
// the hub, verifies and opens each delivery, and hands it over locally
// (a folder, an HTTPS endpoint, or its own local inbox). It keeps its own
// hash-chained audit log of what left and what arrived.
package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

// Options tune an edge for tests; the zero value is production's.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HubFresh is how recently the hub must have answered for /readyz
	// (default 15 s).
	HubFresh time.Duration
	// Poll is how often the hub inbox is asked while it is empty (default 1 s).
	Poll time.Duration
	// Tick is how often the outbox is looked at for due retries and
	// passed exps (default 250 ms), besides the wake-up of each new message.
	Tick time.Duration
	// PolicyWatch is how often outbound_policies and the registry are
	// checked for edits (default 2 s).
	PolicyWatch time.Duration
	// Backoff is the first retry wait, doubled up to MaxBackoff (default
	// 500 ms and 30 s), with jitter.
	Backoff, MaxBackoff time.Duration
	// PurgeEvery is how often Idempotency-Keys older than IdemRetention,
	// and what is final past the retention, are purged (default 1 h).
	PurgeEvery time.Duration
}

// IdemRetention is how long an Idempotency-Key is kept: a repeat within it
// gets the same answer; after it, the key is purged (audited) and may make
// a new message.
const IdemRetention = 25 * time.Hour

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HubFresh <= 0 {
		o.HubFresh = 15 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Tick <= 0 {
		o.Tick = 250 * time.Millisecond
	}
	if o.PolicyWatch <= 0 {
		o.PolicyWatch = 2 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = time.Hour
	}
	return o
}

// Edge is one running edge.
type Edge struct {
	cfg   config.Edge
	o     Options
	log   *slog.Logger
	me    *client.Identity
	reg   atomic.Pointer[trust.Registry] // reloaded when its files change (watchRegistry)
	roots atomic.Pointer[x509.CertPool]  // the registry's trust anchors, for the hub's TLS
	store *Store
	hub   atomic.Pointer[client.Client]
	// hubEnc is the hub's encryption key once read: a message posted while
	// it is known is sealed at once, in the same write as its queuing.
	hubEnc atomic.Pointer[envelope.PublicKey]
	out    atomic.Pointer[outboundPolicy] // nil: no outbound policy configured
	// hand is the hand-over in force; an https:// one is built again when
	// the registry's trust anchors change (watchRegistry).
	hand     atomic.Pointer[handOverRef]
	local    []localToken // empty: loopback without tokens
	opsToken []byte       // nil: no operator token configured

	catalogue map[string]bool // purposes the hub's policy knows (R2)

	// lastHub is when the hub last answered anything (UnixNano); lastHubErr
	// why it did not since.
	lastHub    atomic.Int64
	lastHubErr atomic.Value // string
	// hubDown: the last call to the hub failed to connect. kick: the hub
	// answered again since, and the sender tries every queued message at
	// once instead of waiting out backoffs grown while it was away.
	hubDown, kick atomic.Bool

	wake chan struct{}
	// direct hands a message just queued to the sender as it is, so
	// that its first send neither waits for nor rereads the outbox; when
	// it is full, the sender finds the message in the outbox instead.
	direct   chan *Outgoing
	inflight sync.Map // message id -> struct{}

	m metrics

	api, ops         *http.Server
	apiLn, opsLn     net.Listener
	closeOnce        sync.Once
	checkpointSigner *envelope.PrivateKey
}

// New loads the participant's keys, the registry, the outbound policy and
// the store, and checks that the hand-over target can be used. Nothing
// listens yet (Listen).
func New(ctx context.Context, cfg config.Edge, log *slog.Logger, o Options) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "edge", "participant", cfg.Participant)
	reg, err := trust.Load(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("edge: registry: %w", err)
	}
	self, ok := reg.Participant(cfg.Participant)
	if !ok {
		return nil, fmt.Errorf("edge: participant %s is not in the registry %s", cfg.Participant, cfg.Registry)
	}
	me, err := loadIdentity(cfg.ParticipantKeys, cfg.Participant, reg)
	if err != nil {
		return nil, err
	}
	if !ownsKey(self, me.Signing.Public()) {
		return nil, fmt.Errorf("edge: the signing key in %s is not one of %s's keys in the registry", cfg.ParticipantKeys, cfg.Participant)
	}
	e := &Edge{cfg: cfg, o: o, log: log, me: me, wake: make(chan struct{}, 1), direct: make(chan *Outgoing, directQueue), checkpointSigner: me.Signing}
	e.reg.Store(reg)
	e.roots.Store(me.Roots)
	e.lastHubErr.Store("the hub has not answered yet")
	e.hubDown.Store(true)
	e.hub.Store(e.newHubClient())
	if e.catalogue, err = purposeCatalogue(); err != nil {
		return nil, err
	}
	if cfg.LocalTokenFile != "" {
		if e.local, err = readLocalTokens(cfg.LocalTokenFile); err != nil {
			return nil, err
		}
	}
	if cfg.OpsTokenFile != "" {
		if e.opsToken, err = pki.ReadOpsToken(cfg.OpsTokenFile); err != nil {
			return nil, fmt.Errorf("edge: ops_token_file: %w", err)
		}
	}
	if cfg.OutboundPolicies != "" {
		out, err := loadOutbound(ctx, cfg.OutboundPolicies)
		if err != nil {
			return nil, err
		}
		e.out.Store(out)
	}
	hand, err := newHandOver(cfg.Deliver, me, reg)
	if err != nil {
		return nil, err
	}
	e.hand.Store(&handOverRef{hand})
	if e.store, err = OpenStore(cfg.StorePath(), "edge-"+cfg.Participant, o.Now); err != nil {
		return nil, err
	}
	e.api = &http.Server{Handler: e.localRoutes(), ReadHeaderTimeout: 10 * time.Second}
	e.ops = &http.Server{Handler: e.opsRoutes(), ReadHeaderTimeout: 10 * time.Second}
	return e, nil
}

// Summary is the one line `xborder edge` prints at start: what it uses.
func (e *Edge) Summary() string {
	pol := "none"
	if out := e.out.Load(); out != nil {
		pol = e.cfg.OutboundPolicies + " (" + out.version + ")"
	}
	return fmt.Sprintf("edge %s: keys %s, hub %s, registry %s, local API http://%s, ops http://%s, store %s, deliver %s, outbound policy %s",
		e.cfg.Participant, e.cfg.ParticipantKeys, e.cfg.Hub, e.cfg.Registry, e.Addr(), e.OpsAddr(), e.cfg.StorePath(), e.cfg.Deliver, pol)
}

func (e *Edge) newHubClient() *client.Client {
	me := *e.me
	me.Roots = e.roots.Load()
	return client.New(strings.TrimRight(e.cfg.Hub, "/"), &me)
}

// registry is the registry in force.
func (e *Edge) registry() *trust.Registry { return e.reg.Load() }

// watchRegistry reloads the registry when its files change (a participant
// suspended, a key rotated, an anchor added), as the hub does: a registry
// that does not load, or no longer names this participant with its
// signing key, is refused and the one in force keeps serving. Each reload
// and refusal is audited with the digest of the registry's files.
func (e *Edge) watchRegistry(ctx context.Context) {
	last := trust.Digest(e.cfg.Registry)
	t := time.NewTicker(e.o.PolicyWatch)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := trust.Digest(e.cfg.Registry)
		if d == last {
			continue
		}
		last = d
		reg, err := trust.Load(e.cfg.Registry)
		if err == nil {
			if self, ok := reg.Participant(e.cfg.Participant); !ok {
				err = fmt.Errorf("participant %s is not in it", e.cfg.Participant)
			} else if !ownsKey(self, e.me.Signing.Public()) {
				err = fmt.Errorf("the participant's signing key is not one of %s's keys in it", e.cfg.Participant)
			}
		}
		if err != nil {
			e.log.Error("registry change refused; the previous registry keeps serving", "error", err)
			if rerr := e.store.Record(audit.Entry{Kind: audit.KindRegistryRefused, PayloadSHA256: d}); rerr != nil {
				e.log.Error("audit append failed", "kind", audit.KindRegistryRefused, "error", rerr)
			}
			continue
		}
		roots := x509.NewCertPool()
		for _, a := range reg.Anchors() {
			roots.AddCert(a)
		}
		e.reg.Store(reg)
		e.roots.Store(roots)
		e.hub.Store(e.newHubClient())
		e.reloadHandOver(reg)
		e.log.Info("registry reloaded", "participants", len(reg.Participants()))
		if rerr := e.store.Record(audit.Entry{Kind: audit.KindRegistryReloaded, PayloadSHA256: d}); rerr != nil {
			e.log.Error("audit append failed", "kind", audit.KindRegistryReloaded, "error", rerr)
		}
	}
}

// handOverRef holds the hand-over in force (nil: deliver: local).
type handOverRef struct{ h handOver }

// handOver is the hand-over in force.
func (e *Edge) handOver() handOver { return e.hand.Load().h }

// reloadHandOver builds an https:// hand-over again with the trust anchors
// of the registry now in force, so that a local system's new certificate
// authority is trusted without a restart, and one removed is no longer;
// hand-overs in flight finish on the one they started with. A folder or
// the local inbox has no anchors and is kept.
func (e *Edge) reloadHandOver(reg *trust.Registry) {
	if deliverKind(e.cfg.Deliver) != "https" {
		return
	}
	h, err := newHandOver(e.cfg.Deliver, e.me, reg)
	if err != nil {
		e.log.Error("hand-over not rebuilt; the previous one keeps serving", "error", err)
		return
	}
	old := e.hand.Swap(&handOverRef{h})
	if c, ok := old.h.(io.Closer); ok {
		_ = c.Close() // its idle connections only
	}
	e.log.Info("hand-over trust anchors reloaded", "anchors", len(reg.Anchors()))
}

// loadIdentity reads the participant's folder as `xborder pki init`
// writes it; the hub is verified against the registry's trust anchors.
func loadIdentity(dir, id string, reg *trust.Registry) (*client.Identity, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("edge: participant_keys: %w", err)
	}
	sign, err := envelope.LoadPrivateJWK(filepath.Join(dir, "sign.jwk"))
	if err != nil {
		return nil, fmt.Errorf("edge: participant_keys: %w", err)
	}
	enc, err := envelope.LoadPrivateJWK(filepath.Join(dir, "enc.jwk"))
	if err != nil {
		return nil, fmt.Errorf("edge: participant_keys: %w", err)
	}
	roots := x509.NewCertPool()
	for _, a := range reg.Anchors() {
		roots.AddCert(a)
	}
	return &client.Identity{ID: id, TLS: cert, Signing: sign, Enc: enc, Roots: roots}, nil
}

func ownsKey(p *trust.Participant, k *envelope.PublicKey) bool {
	for _, s := range p.SigningKeys {
		if s.KID() == k.KID() {
			return true
		}
	}
	return false
}

// Listen binds the local API and the operator listener.
func (e *Edge) Listen() error {
	var err error
	if e.apiLn, err = net.Listen("tcp", e.cfg.Listen); err != nil {
		return fmt.Errorf("edge: listen: %w", err)
	}
	if e.opsLn, err = net.Listen("tcp", e.cfg.OpsListen); err != nil {
		e.apiLn.Close()
		return fmt.Errorf("edge: ops_listen: %w", err)
	}
	return nil
}

// Addr is the local API's address once listening.
func (e *Edge) Addr() string {
	if e.apiLn == nil {
		return e.cfg.Listen
	}
	return e.apiLn.Addr().String()
}

// OpsAddr is the operator listener's address once listening.
func (e *Edge) OpsAddr() string {
	if e.opsLn == nil {
		return e.cfg.OpsListen
	}
	return e.opsLn.Addr().String()
}

// Serve runs the listeners, the sender and the receiver until ctx ends.
func (e *Edge) Serve(ctx context.Context) error {
	if e.apiLn == nil {
		if err := e.Listen(); err != nil {
			return err
		}
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- e.api.Serve(e.apiLn) }()
	go func() { errc <- e.ops.Serve(e.opsLn) }()
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); e.watchRegistry(ctx) }()
	go func() { defer wg.Done(); e.purgeLoop(ctx) }()
	go func() { defer wg.Done(); e.sendLoop(ctx) }()
	go func() { defer wg.Done(); e.receiveLoop(ctx) }()
	go func() { defer wg.Done(); e.watchOutbound(ctx) }()
	e.log.Info("edge serving", "listen", e.Addr(), "ops_listen", e.OpsAddr(), "hub", e.cfg.Hub, "deliver", deliverKind(e.cfg.Deliver))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = e.api.Shutdown(sctx)
	_ = e.ops.Shutdown(sctx)
	wg.Wait()
	e.checkpoint()
	return err
}

// purgeLoop purges the Idempotency-Keys past IdemRetention and what is
// final past the configured retention, at start and every PurgeEvery.
func (e *Edge) purgeLoop(ctx context.Context) {
	t := time.NewTicker(e.o.PurgeEvery)
	defer t.Stop()
	for {
		n, err := e.store.PurgeIdempotency(e.o.Now().Add(-IdemRetention))
		switch {
		case err != nil:
			e.log.Error("idempotency keys purge failed", "error", err)
		case n > 0:
			e.log.Info("idempotency keys purged", "count", n)
		}
		n, err = e.store.PurgeRetention(e.o.Now().Add(-e.cfg.RetentionPeriod()))
		switch {
		case err != nil:
			e.log.Error("retention purge failed", "error", err)
		case n > 0:
			e.m.retentionPurged.Add(int64(n))
			e.log.Info("records past retention purged", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkpoint signs the audit chain's head with the participant's key.
func (e *Edge) checkpoint() {
	count, head, err := e.store.Head(context.Background(), e.store.replica)
	if err != nil || count == 0 {
		return
	}
	cps, _ := e.store.Checkpoints(context.Background(), e.store.replica)
	if len(cps) > 0 && cps[len(cps)-1].Count == count {
		return
	}
	if cp, err := audit.SignCheckpoint(e.checkpointSigner, e.store.replica, count, head, e.o.Now(), false); err == nil {
		_ = e.store.PutCheckpoint(context.Background(), cp)
	}
}

// Close releases the store.
func (e *Edge) Close() {
	e.closeOnce.Do(func() {
		if e.apiLn != nil {
			e.apiLn.Close()
			e.opsLn.Close()
		}
		e.store.Close()
	})
}

// Store is the edge's store (tests, audit tools).
func (e *Edge) Store() *Store { return e.store }

// hubAnswered notes that the hub answered (any HTTP status); when it was
// unreachable before, the sender is woken to try every queued message now.
func (e *Edge) hubAnswered() {
	e.lastHub.Store(e.o.Now().UnixNano())
	if e.hubDown.Swap(false) {
		e.kick.Store(true)
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// hubFailed notes why the hub did not answer; the reason names no content.
func (e *Edge) hubFailed(err error) {
	e.lastHubErr.Store(connReason(err))
	e.hubDown.Store(true)
}

func deliverKind(d string) string {
	switch {
	case strings.HasPrefix(d, "file:"):
		return "file"
	case strings.HasPrefix(d, "https://"):
		return "https"
	}
	return d
}

// connReason is a connection failure as an operator reads it, without
// the request.
func connReason(err error) string {
	var op *net.OpError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &op) && op.Op == "dial":
		return "connection to the hub refused or unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return "the hub did not answer in time"
	}
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return "the hub's TLS certificate does not chain to the registry's trust anchors"
	}
	return "the connection to the hub failed"
}
