package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/delivery"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
	"github.com/xborder/xborder/gateway/trust"
)

// The worker on the real embedded store and the real file adapter: one
// recipient drops into a folder, one into a folder it cannot write.

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type fixture struct {
	st       store.Store
	reg      *trust.Holder
	drop     string // UN-IOM's folder
	clock    *clock
	outcomes map[string]int
	mu       sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	drop := filepath.Join(dir, "iom-drop")
	blocked := filepath.Join(dir, "blocked")
	if err := os.WriteFile(blocked, []byte("a file where a folder should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	specs := pki.DemoFederation()
	for i := range specs {
		switch specs[i].ID {
		case "UN-IOM":
			specs[i].Delivery = trust.Delivery{Adapter: trust.AdapterFile, Dir: drop}
		case "UN-OHCHR":
			specs[i].Delivery = trust.Delivery{Adapter: trust.AdapterFile, Dir: filepath.Join(blocked, "sub")}
		}
	}
	if err := pki.Init(pki.Options{Dir: filepath.Join(dir, "pki"), Participants: specs}); err != nil {
		t.Fatal(err)
	}
	reg, err := trust.Load(filepath.Join(dir, "pki", "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, "x.db"), boltstore.Options{Replica: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{st: st, reg: trust.NewHolder(reg), drop: drop, clock: &clock{now: time.Now()}, outcomes: map[string]int{}}
}

func (f *fixture) worker(t *testing.T, maxAttempts int) *delivery.Worker {
	t.Helper()
	w, err := delivery.New(delivery.Options{Queue: f.st, Registry: f.reg, MaxAttempts: maxAttempts,
		Backoff: time.Second, MaxBackoff: 8 * time.Second, Clock: f.clock.Now,
		OnOutcome: func(o string) { f.mu.Lock(); f.outcomes[o]++; f.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// enqueue accepts a message from UN-UNICEF to recipient with one delivery.
func (f *fixture) enqueue(t *testing.T, recipient string) (store.Delivery, *store.Message) {
	t.Helper()
	now := f.clock.Now()
	m := &store.Message{From: "UN-UNICEF", ID: uuid.NewString(), To: recipient, Type: "referral",
		Purpose: "repatriation-logistics", Status: store.StatusAccepted, DecisionID: uuid.NewString(),
		CreatedAt: now, UpdatedAt: now, Expires: now.Add(time.Hour)}
	d := store.Delivery{ID: uuid.NewString(), Recipient: recipient, MessageFrom: m.From, MessageID: m.ID,
		Envelope: []byte("sealed-" + m.ID), CreatedAt: now, VisibleAt: now}
	if _, err := f.st.Accept(context.Background(), m, []store.Delivery{d}, audit.Entry{Kind: audit.KindAccepted, MessageID: m.ID}); err != nil {
		t.Fatal(err)
	}
	return d, m
}

func TestDeliversToTheRecipientsFolder(t *testing.T) {
	f := newFixture(t)
	d, m := f.enqueue(t, "UN-IOM")
	inboxOnly, _ := f.enqueue(t, "KZ-MJ") // an inbox recipient pulls: the worker leaves it
	w := f.worker(t, 3)
	if !w.Once(context.Background()) {
		t.Fatal("the worker found nothing to deliver")
	}
	got, err := os.ReadFile(filepath.Join(f.drop, d.ID+".jwe"))
	if err != nil || !bytes.Equal(got, d.Envelope) {
		t.Fatalf("drop: %q %v", got, err)
	}
	msg, err := f.st.Message(context.Background(), m.From, m.ID)
	if err != nil || msg.Status != store.StatusDelivered {
		t.Errorf("status %v %v, want delivered", msg, err)
	}
	if _, err := f.st.Delivery(context.Background(), "KZ-MJ", inboxOnly.ID); err != nil {
		t.Errorf("the inbox delivery was taken: %v", err)
	}
	if f.outcomes["delivered"] != 1 {
		t.Errorf("outcomes %v", f.outcomes)
	}
	if w.Once(context.Background()) {
		t.Error("a delivered delivery was offered again")
	}
}

// A recipient that cannot be reached is retried with backoff, then its
// delivery is dead-lettered and its message says so.
func TestRetriesThenDeadLetters(t *testing.T) {
	f := newFixture(t)
	d, m := f.enqueue(t, "UN-OHCHR")
	w := f.worker(t, 3)
	for attempt := 1; attempt <= 3; attempt++ {
		if !w.Once(context.Background()) {
			t.Fatalf("attempt %d: nothing to deliver", attempt)
		}
		if w.Once(context.Background()) {
			t.Fatalf("attempt %d: retried before its backoff", attempt)
		}
		f.clock.Advance(time.Minute) // past any backoff of these options
	}
	if f.outcomes["retry"] != 2 || f.outcomes["dead_lettered"] != 1 {
		t.Fatalf("outcomes %v, want 2 retries then a dead letter", f.outcomes)
	}
	dead, err := f.st.DeadLetters(context.Background())
	if err != nil || len(dead) != 1 || dead[0].ID != d.ID || dead[0].Attempts != 3 {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	if msg, _ := f.st.Message(context.Background(), m.From, m.ID); msg.Status != store.StatusDeadLettered {
		t.Errorf("status %s, want dead_lettered", msg.Status)
	}
}

// A suspended participant receives nothing (R14): its deliveries wait.
func TestSuspendedRecipientWaits(t *testing.T) {
	f := newFixture(t)
	d, _ := f.enqueue(t, "UN-IOM")
	reg := f.reg.Load()
	p, _ := reg.Participant("UN-IOM")
	p.Suspended = true // this test's own registry
	defer func() { p.Suspended = false }()
	if f.worker(t, 3).Once(context.Background()) {
		t.Fatal("a suspended recipient's delivery was taken")
	}
	if _, err := os.Stat(filepath.Join(f.drop, d.ID+".jwe")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delivered to a suspended recipient: %v", err)
	}
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	f := newFixture(t)
	w := f.worker(t, 8)
	for n, max := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second} {
		for range 200 {
			if b := w.Backoff(n); b < max/2 || b > max {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, b, max/2, max)
			}
		}
	}
}
