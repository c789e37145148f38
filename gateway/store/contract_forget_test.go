package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Contract cases for the end of message metadata: a message is remembered
// (its record is its replay reservation, PROTOCOL §6) at least until its
// exp, and at least until its retention period ends (R13); at the first
// Purge at or after the later of the two it is forgotten, with its entry.

// testReplayMemoryUntilExp purges at every boundary that matters, in
// order, with a fake now: a millisecond (and, for an exp with a fraction
// of a millisecond, a nanosecond) before each message's ForgetAt, at it,
// and before its exp. Nothing is forgotten before its time, whatever its
// retention (none, shorter than its lifetime, longer), and everything that
// has a time is forgotten at the first Purge at or after it.
func testReplayMemoryUntilExp(t *testing.T, open opener) {
	s := openStore(t, open)
	items := replayItems()
	for _, it := range items {
		recordReplayItem(t, s, it)
	}
	forgotten := purgeAtEveryBoundary(t, s, items)
	checkForgottenOnTime(t, items, forgotten)
	checkForgetEntries(t, s, items)
	checkNewAfterForgotten(t, s, items)
}

// replayItem is a message of testReplayMemoryUntilExp: how it is decided,
// and when it must be forgotten.
type replayItem struct {
	id     string
	denied bool
	state  string // of an accepted message's delivery: queued, acked, dead
	days   int
	life   time.Duration // exp - created
	// forgetAt: when it must go (zero: never).
	forgetAt time.Time
	// m is the message as recorded, for the retries that follow.
	m *store.Message
}

// replayItems are the cases of testReplayMemoryUntilExp: accepted and
// denied, without retention and with one shorter, equal to or longer than
// the message's lifetime, and an exp with a fraction of a millisecond.
func replayItems() []*replayItem {
	const day = 24 * time.Hour
	return []*replayItem{
		{id: "accepted-no-retention", days: 0, life: 2 * day},
		{id: "accepted-retention-shorter", days: 1, life: 2 * day, forgetAt: base.Add(2 * day)},
		{id: "accepted-retention-longer", days: 30, life: time.Hour, forgetAt: base.Add(30 * day)},
		{id: "delivered-retention-shorter", state: "acked", days: 1, life: 36 * time.Hour, forgetAt: base.Add(36 * time.Hour)},
		{id: "dead-retention-equal", state: "dead", days: 1, life: day, forgetAt: base.Add(day)},
		{id: "denied-no-retention", denied: true, days: 0, life: time.Hour, forgetAt: base.Add(time.Hour)},
		{id: "denied-retention-shorter", denied: true, days: 1, life: 2 * day, forgetAt: base.Add(2 * day)},
		{id: "denied-retention-longer", denied: true, days: 30, life: time.Hour, forgetAt: base.Add(30 * day)},
		{id: "denied-fractional-exp", denied: true, days: 0, life: time.Hour + 1500*time.Microsecond + 7,
			forgetAt: base.Add(time.Hour + 1500*time.Microsecond + 7)},
	}
}

// recordReplayItem records it (a denial, or an acceptance whose delivery
// is then left in it.state) and keeps the message in it.m.
func recordReplayItem(t *testing.T, s store.Store, it *replayItem) {
	t.Helper()
	ctx := context.Background()
	m := message("unhcr", it.id, "ke-dra", base)
	m.RetentionDays, m.Expires = it.days, base.Add(it.life)
	it.m = m
	if it.denied {
		if err := s.RecordDenial(ctx, m, denialEntry(m)); err != nil {
			t.Fatalf("RecordDenial %s: %v", it.id, err)
		}
		return
	}
	if _, err := s.Accept(ctx, m, []store.Delivery{delivery("d-"+it.id, "ke-dra", base)}, acceptEntry(m)); err != nil {
		t.Fatalf("Accept %s: %v", it.id, err)
	}
	switch it.state {
	case "acked":
		if err := s.Ack(ctx, "ke-dra", "d-"+it.id, base); err != nil {
			t.Fatal(err)
		}
	case "dead":
		if err := s.DeadLetter(ctx, "ke-dra", "d-"+it.id, base); err != nil {
			t.Fatal(err)
		}
	}
}

// replayPurgeTimes are the purge times: every boundary, in order, each
// once.
func replayPurgeTimes(items []*replayItem) []time.Time {
	const day = 24 * time.Hour
	var times []time.Time
	for _, it := range items {
		exp := base.Add(it.life)
		times = append(times, exp.Add(-time.Millisecond), exp.Add(-time.Nanosecond))
		if !it.forgetAt.IsZero() {
			times = append(times, it.forgetAt.Add(-time.Millisecond), it.forgetAt.Add(-time.Nanosecond))
			// Backends keep times to the millisecond, rounded up: an exp
			// with a fraction of one is forgotten within a millisecond.
			times = append(times, it.forgetAt, ceilMillisecond(it.forgetAt))
		}
	}
	times = append(times, base.Add(1000*day))
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(times, func(a, b time.Time) bool { return a.Equal(b) })
}

// purgeAtEveryBoundary purges at each of the replay purge times and checks
// after each purge that every item is forgotten or still remembered as its
// time says. It returns when each forgotten item was forgotten.
func purgeAtEveryBoundary(t *testing.T, s store.Store, items []*replayItem) map[string]time.Time {
	t.Helper()
	forgotten := map[string]time.Time{}
	for _, now := range replayPurgeTimes(items) {
		for _, p := range purge(t, s, now) {
			if p.Forgotten {
				if _, again := forgotten[p.ID]; again {
					t.Errorf("%s forgotten twice", p.ID)
				}
				forgotten[p.ID] = now
			}
		}
		for _, it := range items {
			_, isGone := forgotten[it.id]
			checkReplayItemAt(t, s, it, now, isGone)
		}
	}
	return forgotten
}

// checkReplayItemAt checks it right after the purge at now: gone only once
// its time has come, gone for good from then on, and remembered until
// then.
func checkReplayItemAt(t *testing.T, s store.Store, it *replayItem, now time.Time, isGone bool) {
	t.Helper()
	switch {
	case isGone && (it.forgetAt.IsZero() || now.Before(it.forgetAt)):
		t.Fatalf("%s forgotten at %v, before its time %v (exp %v)", it.id, now, it.forgetAt, base.Add(it.life))
	case isGone:
		gone(t, s, "unhcr", it.id, "ke-dra")
	case !it.forgetAt.IsZero() && !now.Before(ceilMillisecond(it.forgetAt)):
		t.Fatalf("%s not forgotten at %v, its time %v", it.id, now, it.forgetAt)
	default:
		checkStillRemembered(t, s, it, now)
	}
}

// checkStillRemembered checks that it is still in the store at now: a
// denial with its status, an acceptance as the replay reservation of its
// (from, id).
func checkStillRemembered(t *testing.T, s store.Store, it *replayItem, now time.Time) {
	t.Helper()
	m := get(t, s, "unhcr", it.id)
	if it.denied {
		if m.Status != store.StatusDenied {
			t.Errorf("%s: status %q", it.id, m.Status)
		}
		return
	}
	// Still the replay reservation: a retry is a duplicate.
	again := *it.m
	if _, err := s.Accept(context.Background(), &again, []store.Delivery{delivery(fmt.Sprintf("d-again-%s-%d", it.id, now.UnixNano()), "ke-dra", now)}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("%s at %v: Accept again = %v, want ErrDuplicate", it.id, now, err)
	}
}

// checkForgottenOnTime checks, once all purges are done, that what has a
// time was forgotten at the first purge at or after it, and what has none
// never was.
func checkForgottenOnTime(t *testing.T, items []*replayItem, forgotten map[string]time.Time) {
	t.Helper()
	for _, it := range items {
		at, isGone := forgotten[it.id]
		switch {
		case it.forgetAt.IsZero() && isGone:
			t.Errorf("%s forgotten at %v: it has no end", it.id, at)
		case !it.forgetAt.IsZero() && !isGone:
			t.Errorf("%s never forgotten, due at %v", it.id, it.forgetAt)
		case isGone && at.After(ceilMillisecond(it.forgetAt)):
			t.Errorf("%s forgotten at %v, later than the first purge at or after %v", it.id, at, it.forgetAt)
		}
	}
}

// checkForgetEntries checks one "forgotten" entry each, after its "purged"
// one; and that the chain verifies.
func checkForgetEntries(t *testing.T, s store.Store, items []*replayItem) {
	t.Helper()
	es := chain(t, s)
	for _, it := range items {
		var got []string
		for _, e := range es {
			if e.MessageID == it.id && (e.Kind == audit.KindPurged || e.Kind == audit.KindForgotten) {
				got = append(got, e.Kind)
			}
		}
		var want []string
		if !it.denied && it.days > 0 {
			want = append(want, audit.KindPurged)
		}
		if !it.forgetAt.IsZero() {
			want = append(want, audit.KindForgotten)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: entries %v, want %v", it.id, got, want)
		}
	}
}

// checkNewAfterForgotten checks that, forgotten, the same (from, id) is a
// new message to the store (the exchange refuses it first: its exp has
// passed).
func checkNewAfterForgotten(t *testing.T, s store.Store, items []*replayItem) {
	t.Helper()
	ctx := context.Background()
	const day = 24 * time.Hour
	for _, it := range items {
		if it.forgetAt.IsZero() {
			continue
		}
		m := *it.m
		m.DecisionID = "decision-new"
		if _, err := s.Accept(ctx, &m, []store.Delivery{delivery("d-new-"+it.id, "ke-dra", base.Add(1000*day))}); err != nil {
			t.Errorf("%s: Accept after it was forgotten: %v", it.id, err)
		}
		if got, err := s.MessageTo(ctx, "ke-dra", it.id); err != nil || got.DecisionID != "decision-new" {
			t.Errorf("%s: MessageTo after a new Accept: %+v, %v", it.id, got, err)
		}
	}
}

// A later record of the same (from, id) moves its end: a denial then an
// acceptance without a retention period is never forgotten; a second
// denial with a later exp is forgotten at its own exp; a denial after an
// acceptance changes nothing. And forgetting one message leaves another
// sender's message of the same id to the same recipient alone.
func testForgetFollowsTheRecord(t *testing.T, open opener) {
	ctx := context.Background()
	s := openStore(t, open)
	const day = 24 * time.Hour
	deny := func(id string, exp time.Duration) {
		t.Helper()
		m := message("unhcr", id, "ke-dra", base)
		m.RetentionDays, m.Expires = 0, base.Add(exp)
		if err := s.RecordDenial(ctx, m, denialEntry(m)); err != nil {
			t.Fatal(err)
		}
	}
	acceptNoRetention := func(from, id string, exp time.Duration) {
		t.Helper()
		m := message(from, id, "ke-dra", base)
		m.RetentionDays, m.Expires = 0, base.Add(exp)
		accept(t, s, m, "d-"+from+"-"+id)
	}
	deny("denied-then-accepted", time.Hour)
	acceptNoRetention("unhcr", "denied-then-accepted", time.Hour)
	deny("denied-twice", time.Hour)
	deny("denied-twice", 3*time.Hour)
	acceptNoRetention("unhcr", "accepted-then-denied", time.Hour)
	deny("accepted-then-denied", time.Hour)
	// Two senders, one id, one recipient: unhcr's is denied (forgotten at
	// exp), iom's accepted without retention (kept).
	deny("shared", time.Hour)
	acceptNoRetention("iom", "shared", time.Hour)

	got := purge(t, s, base.Add(2*time.Hour))
	if want := []store.Purged{{From: "unhcr", ID: "shared", Forgotten: true}}; !slices.Equal(got, want) {
		t.Fatalf("Purge at +2h = %+v, want %+v", got, want)
	}
	get(t, s, "unhcr", "denied-twice")
	get(t, s, "unhcr", "denied-then-accepted")
	get(t, s, "unhcr", "accepted-then-denied")
	if m := get(t, s, "iom", "shared"); m.Status != store.StatusAccepted {
		t.Errorf("iom's message: status %q", m.Status)
	}
	if got := purge(t, s, base.Add(3*time.Hour)); !slices.Equal(got, []store.Purged{{From: "unhcr", ID: "denied-twice", Forgotten: true}}) {
		t.Fatalf("Purge at +3h = %+v, want denied-twice", got)
	}
	if got := purge(t, s, base.Add(1000*day)); len(got) != 0 {
		t.Fatalf("Purge at +1000d = %+v, want nothing: the rest are accepted without retention", got)
	}
	if m := get(t, s, "iom", "shared"); m.Status != store.StatusAccepted {
		t.Errorf("iom's message: status %q", m.Status)
	}
	if to, err := s.MessageTo(ctx, "ke-dra", "shared"); err != nil || to.From != "iom" {
		t.Errorf("MessageTo(ke-dra, shared) = %+v, %v; want iom's (accepted, it took the index over)", to, err)
	}
}

// Forgetting a message leaves nothing of its record in the raw storage (its
// answer, the receipt, and its digest are in no key and no value), while
// what is not the message's stays: the consent index and the withdrawal
// (R16), and the audit chain.
func testForgetLeavesNoRecord(t *testing.T, open opener, rawContains func(*testing.T, []byte) bool) {
	ctx := context.Background()
	s := open(t)
	stamp := time.Now().UnixNano()
	secret := func(name string) string { return fmt.Sprintf(`{"id":"ANSWER-%s-%x"}`, name, stamp) }
	type item struct {
		id      string
		denied  bool
		forget  bool
		answer  string
		jwsSHA  string
		consent string
	}
	items := []*item{
		{id: "accepted", forget: true},
		{id: "denied", denied: true, forget: true},
		{id: "kept", forget: false},
	}
	for i, it := range items {
		it.answer, it.jwsSHA, it.consent = secret(it.id), fmt.Sprintf("%064x", stamp+int64(i)), "consent-"+it.id
		m := message("unhcr", it.id, "ke-dra", base)
		m.Answer, m.JWSSHA256, m.ConsentID = []byte(it.answer), it.jwsSHA, it.consent
		m.Expires = base.Add(time.Hour)
		if !it.forget {
			m.Expires = base.Add(1000 * 24 * time.Hour)
		}
		if it.denied {
			if err := s.RecordDenial(ctx, m, denialEntry(m)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		accept(t, s, m, "d-"+it.id)
	}
	if err := s.WithdrawConsent(ctx, "unhcr", "consent-accepted", base); err != nil {
		t.Fatal(err)
	}
	got := purge(t, s, base.Add(30*24*time.Hour))
	if len(got) != 3 {
		t.Fatalf("purged %+v, want all three (kept: its payloads only)", got)
	}
	if rs := consentRecipients(t, s, "unhcr", "consent-accepted"); !slices.Equal(rs, []string{"ke-dra"}) {
		t.Errorf("consent index after the referral was forgotten: %v, want [ke-dra]", rs)
	}
	if w, err := s.ConsentWithdrawn(ctx, "unhcr", "consent-accepted"); err != nil || !w {
		t.Errorf("withdrawal after the referral was forgotten: %v, %v", w, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		// The answer is bytes: JSON records hold them in base64.
		answer := base64.StdEncoding.EncodeToString([]byte(it.answer))
		for what, needle := range map[string]string{"answer": answer, "digest": it.jwsSHA} {
			if found := rawContains(t, []byte(needle)); found == it.forget {
				t.Errorf("%s: its %s found %v in the storage, forgotten %v", it.id, what, found, it.forget)
			}
		}
	}
}

// ceilMillisecond rounds t up to the millisecond, as backends may keep it.
func ceilMillisecond(t time.Time) time.Time {
	if c := t.Truncate(time.Millisecond); c.Before(t) {
		return c.Add(time.Millisecond)
	}
	return t
}
