package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/store/redis"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// backends opens a fresh backend of each kind for a test: the stores, which
// keep the chains beside the state.
var backends = []struct {
	name string
	open func(t *testing.T) audit.Backend
}{
	{"bolt", func(t *testing.T) audit.Backend {
		b, err := bolt.Open(filepath.Join(t.TempDir(), "xborder.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}},
	{"redis", func(t *testing.T) audit.Backend {
		b, err := redis.Open(context.Background(), redistest.Start(t), redis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}},
}

func signingKey(t testing.TB) *envelope.PrivateKey {
	t.Helper()
	k, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var subjectKey = []byte("0123456789abcdef0123456789abcdef")

// clock is a fake clock that moves one second per reading.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newLog(t testing.TB, b audit.Backend, replica string, key *envelope.PrivateKey, now func() time.Time) *audit.Log {
	t.Helper()
	l, err := audit.New(b, audit.Options{Replica: replica, Signer: key, SubjectKey: subjectKey, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// sample is an entry like the exchange will record for a delivered referral.
func sample(l *audit.Log, kind, subjectRef, payload string) audit.Entry {
	return audit.Entry{
		Kind:          kind,
		MessageID:     uuid.NewString(),
		DecisionID:    uuid.NewString(),
		PolicyVersion: "sha256:" + digest("policy")[:16],
		From:          "UN-UNICEF",
		To:            "KZ-MTSZN",
		Purpose:       "rehabilitation-referral",
		Type:          "referral",
		Rules:         []string{"R3", "R10"},
		Redacted:      []string{"subject.documents", "record.biometrics"},
		Categories:    []string{"subject.names", "subject.date_of_birth", "record.health", "record.education"},
		PayloadSHA256: digest(payload),
		SubjectHash:   l.SubjectHash(subjectRef),
	}
}

// record appends n sample entries and fails the test on an error.
func record(t testing.TB, l *audit.Log, n int, subjectRef string) {
	t.Helper()
	for i := range n {
		if _, err := l.Record(context.Background(), sample(l, audit.KindAccepted, subjectRef, "payload "+string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
}

// all reads every entry and checkpoint of a backend.
func all(t testing.TB, b audit.Backend) ([]audit.Entry, []audit.Checkpoint) {
	t.Helper()
	ctx := context.Background()
	ids, err := b.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var es []audit.Entry
	var cps []audit.Checkpoint
	for _, id := range ids {
		if err := b.Entries(ctx, id, 1, func(e audit.Entry) error { es = append(es, e); return nil }); err != nil {
			t.Fatal(err)
		}
		c, err := b.Checkpoints(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c...)
	}
	return es, cps
}
