package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xborder/xborder/gateway/envelope"
)

// Options configure a Log.
type Options struct {
	// Replica names this gateway instance's chain (config or hostname).
	Replica string
	// Signer signs checkpoints: the gateway's signing key.
	Signer *envelope.PrivateKey
	// SubjectKey is the 32-byte secret of SubjectHash (LoadOrCreateKey).
	SubjectKey []byte
	// Logger reports failed checkpoints in Run (default: slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Log appends one replica's entries and signs its checkpoints.
type Log struct {
	b          Backend
	replica    string
	signer     *envelope.PrivateKey
	subjectKey []byte
	log        *slog.Logger
	now        func() time.Time
}

// New checks the options and returns a Log writing to b.
func New(b Backend, o Options) (*Log, error) {
	var errs []error
	if b == nil {
		errs = append(errs, errors.New("audit: no backend"))
	}
	if o.Replica == "" || len(o.Replica) > 200 {
		errs = append(errs, errors.New("audit: replica id must be 1..200 bytes"))
	}
	if o.Signer == nil {
		errs = append(errs, errors.New("audit: no signing key"))
	}
	if len(o.SubjectKey) != KeySize {
		errs = append(errs, fmt.Errorf("audit: subject key must be %d bytes", KeySize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Log{b: b, replica: o.Replica, signer: o.Signer, subjectKey: append([]byte(nil), o.SubjectKey...),
		log: o.Logger.With("component", "audit", "replica", o.Replica), now: o.Now}, nil
}

// Replica is the id of this log's chain.
func (l *Log) Replica() string { return l.replica }

// Backend is the storage the log writes to (the gateway's store).
func (l *Log) Backend() Backend { return l.b }

// SubjectHash is the hex HMAC-SHA256 of a subject reference under the
// subject key; "" for an empty reference.
func (l *Log) SubjectHash(ref string) string {
	return SubjectHash(l.subjectKey, ref)
}

// SubjectHash is the hex HMAC-SHA256 of ref under key; "" for an empty ref.
func SubjectHash(key []byte, ref string) string {
	if ref == "" {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ref))
	return hex.EncodeToString(m.Sum(nil))
}

// Record appends e to this replica's chain, for an event that is not a
// change of the store (a policy change or refusal, a registry reload): the
// store writes the entries of its own changes together with them. Time is
// set here; the backend prepares the rest (Prepare). It returns the stored
// entry.
func (l *Log) Record(ctx context.Context, e Entry) (Entry, error) {
	e.Time = l.now()
	return l.b.Append(ctx, l.replica, e)
}

// Checkpoint signs the current head of this replica's chain and stores it.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	count, head, err := l.b.Head(ctx, l.replica)
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := SignCheckpoint(l.signer, l.replica, count, head, l.now(), false)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := l.b.PutCheckpoint(ctx, cp); err != nil {
		return Checkpoint{}, err
	}
	return cp, nil
}

// Run checkpoints every interval (none if every <= 0) while the chain has
// grown since the last checkpoint, and once more when ctx ends (the shutdown
// checkpoint). Failures are logged, not fatal: the next tick tries again.
func (l *Log) Run(ctx context.Context, every time.Duration) {
	var last uint64
	have := false
	if cps, err := l.b.Checkpoints(ctx, l.replica); err == nil && len(cps) > 0 {
		last, have = cps[len(cps)-1].Count, true
	}
	tick := func(ctx context.Context) {
		count, _, err := l.b.Head(ctx, l.replica)
		if err != nil {
			l.log.Error("audit checkpoint", "error", err)
			return
		}
		if have && count == last {
			return
		}
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			l.log.Error("audit checkpoint", "error", err)
			return
		}
		last, have = cp.Count, true
		l.log.Debug("audit checkpoint", "count", cp.Count, "head", cp.Head)
	}
	var ticks <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ticks:
			tick(ctx)
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			tick(final)
			cancel()
			return
		}
	}
}

// SignCheckpoint makes a checkpoint of (count, head) signed with key.
func SignCheckpoint(key *envelope.PrivateKey, replica string, count uint64, head string, at time.Time, export bool) (Checkpoint, error) {
	at = at.UTC().Round(0)
	claims, err := json.Marshal(checkpointClaims{Replica: replica, Count: count, Head: head, Time: at, Export: export})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	jws, err := envelope.Sign(claims, key, TypCheckpoint)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return Checkpoint{Replica: replica, Count: count, Head: head, Time: at, Export: export,
		KID: key.KID(), Signature: string(jws)}, nil
}

// KeyFunc resolves kids among keys (the gateway's current and older signing
// keys).
func KeyFunc(keys ...*envelope.PublicKey) envelope.KeyFunc {
	m := make(map[string]*envelope.PublicKey, len(keys))
	for _, k := range keys {
		if k != nil && (k.Use() == "" || k.Use() == envelope.UseSig) {
			m[k.KID()] = k
		}
	}
	return func(kid string) (*envelope.PublicKey, bool) {
		k, ok := m[kid]
		return k, ok
	}
}

// SubjectReport is the accountability report for one subject reference:
// every entry about it, across replicas, oldest first — who received which
// data categories about the person, when, for which purpose, under which
// decision — without any data (POST /v1/audit/subject).
type SubjectReport struct {
	SubjectHash string  `json:"subject_hash"`
	Entries     []Entry `json:"entries"`
}

// Subject reports on one subject reference, found by its keyed hash.
func (l *Log) Subject(ctx context.Context, ref string) (SubjectReport, error) {
	h := l.SubjectHash(ref)
	entries, err := Subject(ctx, l.b, h)
	if err != nil {
		return SubjectReport{}, err
	}
	if entries == nil {
		entries = []Entry{}
	}
	return SubjectReport{SubjectHash: h, Entries: entries}, nil
}
