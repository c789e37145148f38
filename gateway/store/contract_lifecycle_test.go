package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// Contract cases for retries, dead letters, consents and retention.

func deadLetters(t *testing.T, s store.Store) []store.Delivery {
	t.Helper()
	ds, err := s.DeadLetters(context.Background())
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	return ds
}

func deadLetterIDs(t *testing.T, s store.Store) []string {
	t.Helper()
	return ids(deadLetters(t, s))
}

func consentRecipients(t *testing.T, s store.Store, from, consentID string) []string {
	t.Helper()
	rs, err := s.ConsentRecipients(context.Background(), from, consentID)
	if err != nil {
		t.Fatalf("ConsentRecipients: %v", err)
	}
	if rs == nil {
		t.Fatalf("ConsentRecipients(%s, %s) = nil, want an empty slice", from, consentID)
	}
	return rs
}

func purge(t *testing.T, s store.Store, now time.Time) []store.Purged {
	t.Helper()
	ps, err := s.Purge(context.Background(), now)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	return ps
}

func testRelease(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	for i := 1; i <= 3; i++ {
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i), "ke-dra", base), fmt.Sprintf("d%d", i))
	}
	if got := ids(lease(t, s, "ke-dra", 2, time.Minute, base)); !slices.Equal(got, []string{"d1", "d2"}) {
		t.Fatalf("leased %v, want [d1 d2]", got)
	}
	// A failed attempt: d1 comes back after a backoff of 10 s, d2 at once
	// (before its lease would have run out).
	if err := s.Release(ctx, "ke-dra", "d1", base.Add(10*time.Second)); err != nil {
		t.Fatalf("Release d1: %v", err)
	}
	if err := s.Release(ctx, "ke-dra", "d2", base.Add(time.Second)); err != nil {
		t.Fatalf("Release d2: %v", err)
	}
	// An unleased delivery can be pushed back too.
	if err := s.Release(ctx, "ke-dra", "d3", base.Add(time.Hour)); err != nil {
		t.Fatalf("Release d3: %v", err)
	}
	steps := []struct {
		name string
		at   time.Time
		want []string
	}{
		{"before any release time", base.Add(time.Second - time.Millisecond), nil},
		{"d2 at its release time", base.Add(time.Second), []string{"d2"}},
		{"d1 not before its release time", base.Add(10*time.Second - time.Millisecond), nil},
		{"d1 at its release time", base.Add(10 * time.Second), []string{"d1"}},
		{"d3 not while pushed back", base.Add(30 * time.Minute), nil},
	}
	for _, st := range steps {
		got := lease(t, s, "ke-dra", 10, time.Hour*2, st.at)
		if !slices.Equal(ids(got), st.want) {
			t.Fatalf("%s: leased %v, want %v", st.name, ids(got), st.want)
		}
		for _, d := range got {
			if d.Attempts != 2 {
				t.Errorf("%s: %s attempts %d, want 2 (a release keeps the count)", st.name, d.ID, d.Attempts)
			}
			if want := "jwe." + d.ID; string(d.Envelope) != want {
				t.Errorf("%s: envelope %q, want %q", st.name, d.Envelope, want)
			}
		}
	}
	if n := depth(t, s, "ke-dra"); n != 3 {
		t.Errorf("Depth = %d, want 3: releases neither add nor remove", n)
	}
	if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusAccepted || m.Attempts != 2 {
		t.Errorf("released message: status %q attempts %d, want accepted 2", m.Status, m.Attempts)
	}

	if err := s.Ack(ctx, "ke-dra", "d1", base); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ctx, "ke-dra", "d2", base); err != nil {
		t.Fatal(err)
	}
	notFound := []struct{ name, recipient, id string }{
		{"acknowledged", "ke-dra", "d1"},
		{"dead-lettered", "ke-dra", "d2"},
		{"another recipient's", "ug-opm", "d3"},
		{"unknown", "ke-dra", "d-unknown"},
		{"empty id", "ke-dra", ""},
		{"NUL in recipient", "ke\x00dra", "d3"},
	}
	for _, tc := range notFound {
		if err := s.Release(ctx, tc.recipient, tc.id, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Release of %s delivery: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if got := deadLetterIDs(t, s); !slices.Equal(got, []string{"d2"}) {
		t.Errorf("a release touched the dead letters: %v", got)
	}
}

func testDeadLetter(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	accept(t, s, message("unhcr", "m2", "ke-dra", base), "d2")
	lease(t, s, "ke-dra", 10, time.Minute, base)
	lease(t, s, "ke-dra", 1, time.Minute, base.Add(time.Minute)) // d1: 2 attempts
	deadAt := base.Add(2 * time.Minute)
	if err := s.DeadLetter(ctx, "ke-dra", "d1", deadAt); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}

	m := get(t, s, "unhcr", "m1")
	if m.Status != store.StatusDeadLettered || !m.UpdatedAt.Equal(deadAt) || m.Attempts != 2 {
		t.Errorf("message: status %q updated %v attempts %d, want dead_lettered %v 2", m.Status, m.UpdatedAt, m.Attempts, deadAt)
	}
	if m := get(t, s, "unhcr", "m2"); m.Status != store.StatusAccepted {
		t.Errorf("other message: status %q, want accepted", m.Status)
	}
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1: a dead letter is not queued", n)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base.Add(time.Hour))); !slices.Equal(got, []string{"d2"}) {
		t.Errorf("leased %v, want [d2]: a dead letter is not offered", got)
	}
	dl := deadLetters(t, s)
	if len(dl) != 1 {
		t.Fatalf("DeadLetters = %v, want [d1]", ids(dl))
	}
	want := store.Delivery{ID: "d1", Recipient: "ke-dra", MessageFrom: "unhcr", MessageID: "m1",
		Envelope: []byte("jwe.d1"), Attempts: 2, CreatedAt: base, DeadLetteredAt: deadAt}
	got := dl[0]
	if got.ID != want.ID || got.Recipient != want.Recipient || got.MessageFrom != want.MessageFrom ||
		got.MessageID != want.MessageID || !bytes.Equal(got.Envelope, want.Envelope) || got.Attempts != want.Attempts ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.DeadLetteredAt.Equal(want.DeadLetteredAt) {
		t.Errorf("dead letter\n got %+v\nwant %+v", got, want)
	}

	for _, tc := range []struct{ name, recipient, id string }{
		{"again", "ke-dra", "d1"},
		{"unknown", "ke-dra", "d-unknown"},
		{"another recipient's", "ug-opm", "d2"},
		{"empty recipient", "", "d2"},
	} {
		if err := s.DeadLetter(ctx, tc.recipient, tc.id, deadAt); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeadLetter %s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := s.Ack(ctx, "ke-dra", "d1", deadAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Ack of a dead letter: err = %v, want ErrNotFound", err)
	}
	if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusDeadLettered {
		t.Errorf("after a refused ack: status %q, want dead_lettered", m.Status)
	}
	// Its id stays taken while it is a dead letter.
	if _, err := s.Accept(ctx, message("unhcr", "m3", "ke-dra", base), []store.Delivery{delivery("d1", "ke-dra", base)}); err == nil {
		t.Error("Accept reusing a dead letter's delivery id: err = nil")
	}
	if got := deadLetterIDs(t, s); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("dead letters %v after a refused Accept, want [d1]", got)
	}
}

func testDeadLettersOrder(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	if got := deadLetters(t, s); len(got) != 0 {
		t.Fatalf("empty store has dead letters %v", ids(got))
	}
	// Created in one order, dead-lettered in another, across recipients.
	plan := []struct {
		id, to string
		deadAt time.Duration
	}{
		{"d1", "ke-dra", 3 * time.Second},
		{"d2", "ug-opm", 1 * time.Second},
		{"d3", "ke-dra", 2 * time.Second},
		{"d4", "ug-opm", 4 * time.Second},
	}
	for i, p := range plan {
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i+1), p.to, base.Add(time.Duration(i)*time.Millisecond)), p.id)
	}
	for _, i := range []int{3, 0, 2, 1} {
		p := plan[i]
		if err := s.DeadLetter(ctx, p.to, p.id, base.Add(p.deadAt)); err != nil {
			t.Fatalf("DeadLetter %s: %v", p.id, err)
		}
	}
	dl := deadLetters(t, s)
	if got := ids(dl); !slices.Equal(got, []string{"d2", "d3", "d1", "d4"}) {
		t.Fatalf("DeadLetters %v, want [d2 d3 d1 d4] (oldest dead letter first)", got)
	}
	for _, d := range dl {
		for _, p := range plan {
			if p.id == d.ID && (d.Recipient != p.to || !d.DeadLetteredAt.Equal(base.Add(p.deadAt)) || string(d.Envelope) != "jwe."+d.ID) {
				t.Errorf("%s: recipient %s dead at %v envelope %q", d.ID, d.Recipient, d.DeadLetteredAt, d.Envelope)
			}
		}
	}
}

func testRequeue(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	accept(t, s, message("unhcr", "m1", "ke-dra", base), "d1")
	for i := range 3 {
		lease(t, s, "ke-dra", 1, time.Minute, base.Add(time.Duration(i)*time.Minute))
	}
	if err := s.DeadLetter(ctx, "ke-dra", "d1", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, recipient, id string }{
		{"another recipient", "ug-opm", "d1"},
		{"unknown id", "ke-dra", "d-unknown"},
		{"queued, not dead", "ke-dra", "d2"},
		{"empty id", "ke-dra", ""},
	} {
		if tc.id == "d2" {
			accept(t, s, message("unhcr", "m2", "ke-dra", base), "d2")
		}
		if err := s.Requeue(ctx, tc.recipient, tc.id, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Requeue %s: err = %v, want ErrNotFound", tc.name, err)
		}
	}

	requeuedAt := base.Add(2 * time.Hour)
	if err := s.Requeue(ctx, "ke-dra", "d1", requeuedAt); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	if got := deadLetters(t, s); len(got) != 0 {
		t.Errorf("still dead letters after requeue: %v", ids(got))
	}
	if err := s.Requeue(ctx, "ke-dra", "d1", requeuedAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Requeue: err = %v, want ErrNotFound", err)
	}
	m := get(t, s, "unhcr", "m1")
	if m.Status != store.StatusAccepted || !m.UpdatedAt.Equal(requeuedAt) {
		t.Errorf("requeued message: status %q updated %v, want accepted %v", m.Status, m.UpdatedAt, requeuedAt)
	}
	if n := depth(t, s, "ke-dra"); n != 2 {
		t.Errorf("Depth = %d, want 2", n)
	}
	// Visible now, not before; attempts start again.
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, requeuedAt.Add(-time.Millisecond))); slices.Contains(got, "d1") {
		t.Errorf("requeued d1 leased before the requeue time: %v", got)
	}
	got := lease(t, s, "ke-dra", 10, time.Minute, requeuedAt)
	if len(got) != 1 || got[0].ID != "d1" || got[0].Attempts != 1 || string(got[0].Envelope) != "jwe.d1" {
		t.Fatalf("after requeue leased %+v, want d1 with attempts 1 and its envelope", got)
	}
	if err := s.Ack(ctx, "ke-dra", "d1", requeuedAt); err != nil {
		t.Fatalf("Ack after requeue: %v", err)
	}
	if m := get(t, s, "unhcr", "m1"); m.Status != store.StatusDelivered {
		t.Errorf("acked after requeue: status %q, want delivered", m.Status)
	}
}

// A message stays dead_lettered while any of its deliveries is a dead letter.
func testRequeueOneOfTwo(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	m := message("unhcr", "m1", "ke-dra", base)
	if _, err := s.Accept(ctx, m, []store.Delivery{delivery("d1", "ke-dra", base), delivery("d2", "ke-dra-archive", base)}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"ke-dra", "ke-dra-archive"} {
		id := map[string]string{"ke-dra": "d1", "ke-dra-archive": "d2"}[r]
		if err := s.DeadLetter(ctx, r, id, base.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Requeue(ctx, "ke-dra", "d1", base.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusDeadLettered {
		t.Errorf("one of two requeued: status %q, want dead_lettered", got.Status)
	}
	if err := s.Requeue(ctx, "ke-dra-archive", "d2", base.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusAccepted || !got.UpdatedAt.Equal(base.Add(3*time.Minute)) {
		t.Errorf("both requeued: status %q updated %v, want accepted", got.Status, got.UpdatedAt)
	}
	for _, r := range []string{"ke-dra", "ke-dra-archive"} {
		for _, d := range lease(t, s, r, 10, time.Minute, base.Add(time.Hour)) {
			if err := s.Ack(ctx, r, d.ID, base.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := get(t, s, "unhcr", "m1"); got.Status != store.StatusDelivered {
		t.Errorf("both acked: status %q, want delivered", got.Status)
	}
}

func testDepths(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	check := func(name string, want map[string]int) {
		t.Helper()
		got, err := s.Depths(ctx)
		if err != nil {
			t.Fatalf("%s: Depths: %v", name, err)
		}
		for r, n := range got {
			if n != want[r] {
				t.Errorf("%s: Depths[%s] = %d, want %d", name, r, n, want[r])
			}
		}
		for r, n := range want {
			if got[r] != n {
				t.Errorf("%s: Depths[%s] = %d (present %v), want %d", name, r, got[r], hasKey(got, r), n)
			}
		}
	}
	check("empty", nil)
	for i := range 3 {
		accept(t, s, message("unhcr", fmt.Sprintf("m%d", i), "ke-dra", base), fmt.Sprintf("d%d", i))
	}
	accept(t, s, message("unhcr", "m9", "ug-opm", base), "d9")
	check("queued", map[string]int{"ke-dra": 3, "ug-opm": 1})
	lease(t, s, "ke-dra", 10, time.Minute, base)
	check("leased still count", map[string]int{"ke-dra": 3, "ug-opm": 1})
	if err := s.DeadLetter(ctx, "ke-dra", "d0", base); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, "ug-opm", "d9", base); err != nil {
		t.Fatal(err)
	}
	check("dead letter and ack", map[string]int{"ke-dra": 2})
	if err := s.Requeue(ctx, "ke-dra", "d0", base); err != nil {
		t.Fatal(err)
	}
	check("requeued", map[string]int{"ke-dra": 3})
	if n := depth(t, s, "ke-dra"); n != 3 {
		t.Errorf("Depth = %d, want 3 (as Depths)", n)
	}
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

func testConsentIndex(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	withConsent := func(from, id, consent string) *store.Message {
		m := message(from, id, "ke-dra", base)
		m.ConsentID = consent
		return m
	}
	acceptTo := func(m *store.Message, recipients ...string) error {
		ds := make([]store.Delivery, len(recipients))
		for i, r := range recipients {
			ds[i] = delivery(m.ID+"-"+r, r, base)
		}
		_, err := s.Accept(ctx, m, ds)
		return err
	}
	steps := []struct {
		m          *store.Message
		recipients []string
	}{
		{withConsent("unhcr", "m1", "c1"), []string{"ug-opm", "ke-dra"}},
		{withConsent("unhcr", "m2", "c1"), []string{"ke-dra", "ke-dra-archive"}},
		{withConsent("iom", "m3", "c1"), []string{"rw-minema"}},
		{withConsent("unhcr", "m4", ""), []string{"tz-moha"}},
		{withConsent("unhcr", "m5", "c2"), nil},
	}
	for _, st := range steps {
		if err := acceptTo(st.m, st.recipients...); err != nil {
			t.Fatalf("Accept %s: %v", st.m.ID, err)
		}
	}
	// Neither a duplicate nor a refused Accept indexes anything.
	if err := acceptTo(withConsent("unhcr", "m1", "c3"), "bi-onpra"); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("duplicate Accept: err = %v", err)
	}
	if err := acceptTo(withConsent("unhcr", "m6", "c4"), "bi-onpra", "bi-onpra"); err == nil {
		t.Fatal("Accept with a repeated delivery id succeeded")
	}
	accept(t, s, withConsent("unhcr", "m7", "c5"), "d-taken")
	if _, err := s.Accept(ctx, withConsent("unhcr", "m8", "c5"), []store.Delivery{
		delivery("d-new", "cd-cnr", base), delivery("d-taken", "ke-dra", base)}); err == nil {
		t.Fatal("Accept reusing a queued delivery id succeeded")
	}

	cases := []struct {
		from, consent string
		want          []string
	}{
		{"unhcr", "c1", []string{"ke-dra", "ke-dra-archive", "ug-opm"}},
		{"iom", "c1", []string{"rw-minema"}},
		{"unhcr", "c2", []string{}},
		{"unhcr", "c3", []string{}},
		{"unhcr", "c4", []string{}},
		{"unhcr", "c5", []string{"ke-dra"}},
		{"unhcr", "unknown", []string{}},
		{"unhcr", "", []string{}},
		{"ke-dra", "c1", []string{}},
	}
	for _, tc := range cases {
		if got := consentRecipients(t, s, tc.from, tc.consent); !slices.Equal(got, tc.want) {
			t.Errorf("ConsentRecipients(%s, %q) = %v, want %v", tc.from, tc.consent, got, tc.want)
		}
	}
}

func testConsentWithdrawal(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	withdrawn := func(from, consent string) bool {
		t.Helper()
		w, err := s.ConsentWithdrawn(ctx, from, consent)
		if err != nil {
			t.Fatalf("ConsentWithdrawn: %v", err)
		}
		return w
	}
	if withdrawn("unhcr", "c1") {
		t.Fatal("withdrawn before any withdrawal")
	}
	for i := range 2 { // idempotent
		if err := s.WithdrawConsent(ctx, "unhcr", "c1", base.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatalf("WithdrawConsent %d: %v", i, err)
		}
	}
	cases := []struct {
		from, consent string
		want          bool
	}{
		{"unhcr", "c1", true},
		{"iom", "c1", false},
		{"unhcr", "c2", false},
		{"unhcr", "", false},
	}
	for _, tc := range cases {
		if got := withdrawn(tc.from, tc.consent); got != tc.want {
			t.Errorf("ConsentWithdrawn(%s, %q) = %v, want %v", tc.from, tc.consent, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"unhcr", ""}, {"", "c1"}, {"unhcr", "c\x001"}} {
		if err := s.WithdrawConsent(ctx, bad[0], bad[1], base); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("WithdrawConsent(%q, %q): err = %v, want a refusal", bad[0], bad[1], err)
		}
	}
}

// testPurge follows messages in every state a delivery can be in through
// the purges at the end of their retention periods and at their exps.
func testPurge(t *testing.T, open opener) {
	s := openStore(t, open)
	acceptPurgeCases(t, s)
	purgedAt := base.Add(24 * time.Hour)
	checkPurgeAtOneDay(t, s, purgedAt)
	checkPurgeOfDeadLetter(t, s, purgedAt)
	checkPurgeUntilExp(t, s)
	checkNoRetentionKept(t, s)
}

// retainedMessage is a message of testPurge. Most of these live three
// days (exp) and are retained one: their payloads go after a day, their
// metadata at exp.
func retainedMessage(id string, days int, at time.Time) *store.Message {
	m := message("unhcr", id, "ke-dra", at)
	m.RetentionDays = days
	m.Expires = base.Add(3 * 24 * time.Hour)
	return m
}

// acceptPurgeCases records the messages of testPurge, m1 to m6, each in a
// state a purge must handle.
func acceptPurgeCases(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	// m1: one delivery queued and leased, one acknowledged.
	m1 := retainedMessage("m1", 1, base)
	if _, err := s.Accept(ctx, m1, []store.Delivery{delivery("d1", "ke-dra", base), delivery("d1b", "ke-dra-archive", base)}); err != nil {
		t.Fatal(err)
	}
	lease(t, s, "ke-dra", 10, time.Minute, base)
	if err := s.Ack(ctx, "ke-dra-archive", "d1b", base); err != nil {
		t.Fatal(err)
	}
	// m2: dead-lettered, due an hour after m1.
	accept(t, s, retainedMessage("m2", 1, base.Add(time.Hour)), "d2")
	if err := s.DeadLetter(ctx, "ke-dra", "d2", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	accept(t, s, retainedMessage("m3", 0, base), "d3") // never purged, never forgotten
	m4 := retainedMessage("m4", 2, base)
	m4.Expires = base.Add(time.Hour) // purged and forgotten at once
	accept(t, s, m4, "d4")
	accept(t, s, retainedMessage("m5", 1, base), "d5")
	if err := s.Ack(ctx, "ke-dra", "d5", base); err != nil { // delivered: nothing left to delete
		t.Fatal(err)
	}
	m6 := retainedMessage("m6", 1, base)
	m6.Expires = base.Add(time.Hour) // a denial: forgotten at the end of its retention
	if err := s.RecordDenial(ctx, m6, denialEntry(m6)); err != nil {
		t.Fatal(err)
	}
}

// checkPurgeAtOneDay checks the purges up to purgedAt, a day after base:
// nothing before it; at it, the payloads of m1 and m5 (metadata kept) and
// the denial m6 forgotten.
func checkPurgeAtOneDay(t *testing.T, s store.Store, purgedAt time.Time) {
	t.Helper()
	ctx := context.Background()
	const day = 24 * time.Hour
	if got := purge(t, s, base.Add(day-time.Millisecond)); len(got) != 0 {
		t.Fatalf("purged %+v before any retention period ended", got)
	}
	got := purge(t, s, purgedAt)
	want := []store.Purged{
		{From: "unhcr", ID: "m1", Deliveries: 1, Payloads: true},
		{From: "unhcr", ID: "m5", Deliveries: 0, Payloads: true},
		{From: "unhcr", ID: "m6", Forgotten: true},
	}
	slices.SortFunc(got, func(a, b store.Purged) int { return cmpString(a.ID, b.ID) }) // same time
	if !slices.Equal(got, want) {
		t.Fatalf("Purge at +1d = %+v, want %+v", got, want)
	}
	wantM1 := retainedMessage("m1", 1, base)
	wantM1.Purged, wantM1.PurgedAt, wantM1.Attempts = true, purgedAt, 1
	sameMessage(t, get(t, s, "unhcr", "m1"), wantM1) // metadata and receipt kept until exp
	if got := get(t, s, "unhcr", "m5"); !got.Purged || got.Status != store.StatusDelivered {
		t.Errorf("m5: purged %v status %q, want purged and still delivered", got.Purged, got.Status)
	}
	gone(t, s, "unhcr", "m6", "ke-dra")
	if err := s.Ack(ctx, "ke-dra", "d1", purgedAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Ack of a purged delivery: err = %v, want ErrNotFound", err)
	}
	if err := s.Release(ctx, "ke-dra", "d1", purgedAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Release of a purged delivery: err = %v, want ErrNotFound", err)
	}
}

// checkPurgeOfDeadLetter checks the purge an hour later: m2 with its dead
// letter, which can no longer be requeued; and a second purge at the same
// time finds nothing.
func checkPurgeOfDeadLetter(t *testing.T, s store.Store, purgedAt time.Time) {
	t.Helper()
	const day = 24 * time.Hour
	if got := purge(t, s, base.Add(day+time.Hour)); !slices.Equal(got, []store.Purged{{From: "unhcr", ID: "m2", Deliveries: 1, Payloads: true}}) {
		t.Fatalf("Purge at +1d1h = %+v, want m2 with its dead letter", got)
	}
	if got := deadLetters(t, s); len(got) != 0 {
		t.Errorf("dead letters after purge: %v", ids(got))
	}
	if err := s.Requeue(context.Background(), "ke-dra", "d2", purgedAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Requeue of a purged dead letter: err = %v, want ErrNotFound", err)
	}
	if got := get(t, s, "unhcr", "m2"); !got.Purged || got.Status != store.StatusDeadLettered {
		t.Errorf("m2: purged %v status %q, want purged, dead_lettered", got.Purged, got.Status)
	}
	if got := purge(t, s, base.Add(day+time.Hour)); len(got) != 0 {
		t.Errorf("second Purge at the same time = %+v, want nothing", got)
	}
}

// checkPurgeUntilExp checks the purges up to exp: m4, whose exp passed
// before its retention ended, purged and forgotten at once; at exp, the
// purged m1, m2 and m5 forgotten.
func checkPurgeUntilExp(t *testing.T, s store.Store) {
	t.Helper()
	const day = 24 * time.Hour
	if got := purge(t, s, base.Add(2*day)); !slices.Equal(got, []store.Purged{{From: "unhcr", ID: "m4", Deliveries: 1, Payloads: true, Forgotten: true}}) {
		t.Errorf("Purge at +2d = %+v, want m4 purged and forgotten", got)
	}
	gone(t, s, "unhcr", "m4", "ke-dra")
	if got := purge(t, s, base.Add(3*day-time.Millisecond)); len(got) != 0 {
		t.Errorf("Purge before exp = %+v, want nothing", got)
	}
	got := purge(t, s, base.Add(3*day))
	slices.SortFunc(got, func(a, b store.Purged) int { return cmpString(a.ID, b.ID) })
	if want := []store.Purged{{From: "unhcr", ID: "m1", Forgotten: true}, {From: "unhcr", ID: "m2", Forgotten: true},
		{From: "unhcr", ID: "m5", Forgotten: true}}; !slices.Equal(got, want) {
		t.Errorf("Purge at exp = %+v, want %+v", got, want)
	}
	for _, id := range []string{"m1", "m2", "m5"} {
		gone(t, s, "unhcr", id, "ke-dra")
	}
}

// checkNoRetentionKept checks that m3, without a retention period, is
// never purged: its delivery stays queued, its record unmarked.
func checkNoRetentionKept(t *testing.T, s store.Store) {
	t.Helper()
	const day = 24 * time.Hour
	if got := purge(t, s, base.Add(1000*day)); len(got) != 0 {
		t.Errorf("Purge at +1000d = %+v, want nothing (m3 has no retention period)", got)
	}
	if got := ids(lease(t, s, "ke-dra", 10, time.Minute, base.Add(1000*day))); !slices.Equal(got, []string{"d3"}) {
		t.Errorf("left in the queue %v, want [d3]", got)
	}
	if n := depth(t, s, "ke-dra"); n != 1 {
		t.Errorf("Depth = %d, want 1", n)
	}
	if got := get(t, s, "unhcr", "m3"); got.Purged || !got.PurgedAt.IsZero() {
		t.Error("m3 marked purged")
	}
}

// gone checks that (from, id) is forgotten: neither its sender nor its
// recipient finds it.
func gone(t *testing.T, s store.Store, from, id, to string) {
	t.Helper()
	if m, err := s.Message(context.Background(), from, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Message(%s, %s) = %+v, %v; want ErrNotFound", from, id, m, err)
	}
	if m, err := s.MessageTo(context.Background(), to, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MessageTo(%s, %s) = %+v, %v; want ErrNotFound", to, id, m, err)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// More messages due at once than a backend handles in one step: all are
// purged (and forgotten: their exp passed long before), in purge-time
// order.
func testPurgeBacklog(t *testing.T, open opener) {
	if testing.Short() {
		t.Skip("accepts 600 messages and purges the backlog")
	}
	ctx := context.Background()
	s := openStore(t, open)
	const n = 600
	var want []store.Purged
	for i := range n {
		id := fmt.Sprintf("m%04d", i)
		// Created in reverse order of id, a millisecond apart.
		m := message("unhcr", id, "ke-dra", base.Add(time.Duration(n-i)*time.Millisecond))
		m.RetentionDays = 7
		if _, err := s.Accept(ctx, m, []store.Delivery{delivery("d"+id, "ke-dra", m.CreatedAt)}); err != nil {
			t.Fatal(err)
		}
		want = append(want, store.Purged{From: "unhcr", ID: id, Deliveries: 1, Payloads: true, Forgotten: true})
	}
	slices.Reverse(want)
	late := message("unhcr", "late", "ke-dra", base.Add(time.Hour))
	late.RetentionDays = 7
	accept(t, s, late, "d-late")
	got := purge(t, s, base.Add(7*24*time.Hour+time.Minute))
	if !slices.Equal(got, want) {
		t.Fatalf("purged %d messages, want %d in purge-time order (first %+v)", len(got), len(want), got[:min(3, len(got))])
	}
	if d := depth(t, s, "ke-dra"); d != 1 {
		t.Errorf("Depth = %d, want 1 (the message not yet due)", d)
	}
}

// A purge leaves no payload behind: the envelopes of purged messages occur
// nowhere in the raw storage, in no key and no value, whatever state their
// deliveries were in; an acknowledged envelope is gone too.
func testPurgeLeavesNoPayload(t *testing.T, open opener, rawContains func(*testing.T, []byte) bool) {
	s := open(t)
	items := payloadItems()
	acceptPayloadItems(t, s, items)
	putPayloadItemsInState(t, s, items)
	purgeDuePayloads(t, s)
	// The raw scan reads the storage behind closed stores only.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkPayloadsInStorage(t, items, rawContains)
}

// payloadItem is a message of testPurgeLeavesNoPayload, with its two
// envelopes.
type payloadItem struct {
	id        string
	retention int
	state     string
	env       []byte // to ke-dra, in the given state
	archive   []byte // to ke-dra-archive, queued
}

// payloadItems are the messages of testPurgeLeavesNoPayload: five due, a
// delivery of each in every state it can be in, and three kept (without a
// retention period, or not due yet).
func payloadItems() []*payloadItem {
	return []*payloadItem{
		{id: "queued", retention: 1, state: "queued"},
		{id: "leased", retention: 1, state: "leased"},
		{id: "released", retention: 1, state: "released"},
		{id: "dead", retention: 1, state: "dead"},
		{id: "requeued", retention: 1, state: "requeued"},
		{id: "acked-kept", retention: 0, state: "acked"},
		{id: "kept", retention: 0, state: "queued"},
		{id: "not-due", retention: 30, state: "dead"},
	}
}

// secretPayload is an envelope to look for in the raw storage.
func secretPayload(name string) []byte {
	// Distinctive and long enough not to occur by chance; not valid
	// UTF-8, so that no backend stores it in an escaped form that the
	// scan would miss.
	return []byte(fmt.Sprintf("\xffSECRET-PAYLOAD-%s-%x\xfe", name, time.Now().UnixNano()))
}

// acceptPayloadItems accepts each item with two deliveries of secret
// envelopes, one to ke-dra and one to ke-dra-archive.
func acceptPayloadItems(t *testing.T, s store.Store, items []*payloadItem) {
	t.Helper()
	for _, it := range items {
		it.env, it.archive = secretPayload(it.id), secretPayload(it.id+"-archive")
		m := message("unhcr", it.id, "ke-dra", base)
		m.RetentionDays = it.retention
		d := delivery("d-"+it.id, "ke-dra", base)
		d.Envelope = it.env
		archive := delivery("d-"+it.id+"-archive", "ke-dra-archive", base)
		archive.Envelope = it.archive
		if _, err := s.Accept(context.Background(), m, []store.Delivery{d, archive}); err != nil {
			t.Fatal(err)
		}
	}
}

// putPayloadItemsInState leases every delivery to ke-dra once, then takes
// each to its item's state.
func putPayloadItemsInState(t *testing.T, s store.Store, items []*payloadItem) {
	t.Helper()
	ctx := context.Background()
	lease(t, s, "ke-dra", len(items), time.Minute, base) // every one leased once
	for _, it := range items {
		var err error
		switch it.state {
		case "queued":
			err = s.Release(ctx, "ke-dra", "d-"+it.id, base)
		case "released":
			err = s.Release(ctx, "ke-dra", "d-"+it.id, base.Add(time.Hour))
		case "dead":
			err = s.DeadLetter(ctx, "ke-dra", "d-"+it.id, base)
		case "requeued":
			if err = s.DeadLetter(ctx, "ke-dra", "d-"+it.id, base); err == nil {
				err = s.Requeue(ctx, "ke-dra", "d-"+it.id, base)
			}
		case "acked":
			err = s.Ack(ctx, "ke-dra", "d-"+it.id, base)
		}
		if err != nil {
			t.Fatalf("%s: %v", it.id, err)
		}
	}
}

// purgeDuePayloads purges after three days: the five messages retained one
// day, each with both its deliveries.
func purgeDuePayloads(t *testing.T, s store.Store) {
	t.Helper()
	got := purge(t, s, base.Add(3*24*time.Hour))
	if len(got) != 5 {
		t.Fatalf("purged %+v, want the 5 messages with 1 day of retention", got)
	}
	for _, p := range got {
		if p.Deliveries != 2 {
			t.Errorf("%s: %d deliveries purged, want 2", p.ID, p.Deliveries)
		}
	}
}

// checkPayloadsInStorage checks that the raw storage holds the envelopes
// it must keep, and none of the purged or acknowledged ones: a scan that
// finds what is kept is one that would find what is left behind.
func checkPayloadsInStorage(t *testing.T, items []*payloadItem, rawContains func(*testing.T, []byte) bool) {
	t.Helper()
	for _, it := range items {
		purged := it.retention == 1
		if found := rawContains(t, it.env); found && (purged || it.state == "acked") {
			t.Errorf("%s (%s): envelope %q still in the storage", it.id, it.state, it.env)
		} else if !found && !purged && it.state != "acked" {
			t.Errorf("%s (%s): the raw scan misses an envelope that must be kept", it.id, it.state)
		}
		if found := rawContains(t, it.archive); found && purged {
			t.Errorf("%s: queued envelope %q still in the storage after purge", it.id, it.archive)
		} else if !found && !purged {
			t.Errorf("%s: the raw scan misses a queued envelope", it.id)
		}
	}
}
