package store_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store"
)

// The oracle is PROTOCOL §6 and DOMAIN R13, not the code: a message's
// metadata may go only once the exchange itself refuses the message as
// expired (envelope.Message.CheckTime, with exp as the float it is) and
// its retention period has ended; its payloads only once its retention
// period has ended; an accepted message without a retention period keeps
// both. And what may go does go, at the first purge at or after the
// later of the two.
func TestRetireProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 4))
	const day = 24 * time.Hour
	statuses := []string{store.StatusAccepted, store.StatusDelivered, store.StatusDeadLettered, store.StatusDenied}
	for i := range 200_000 {
		created := time.Unix(1_900_000_000+rng.Int64N(1_000_000), rng.Int64N(1e9)).UTC()
		// exp: a NumericDate, often fractional, up to a day after creation
		// (longer than some retention periods below), now and then exactly
		// on a whole second or millisecond.
		exp := float64(created.Unix()) + float64(created.Nanosecond())/1e9 + rng.Float64()*2*86400
		switch rng.IntN(4) {
		case 0:
			exp = math.Ceil(exp)
		case 1:
			exp = math.Ceil(exp*1000) / 1000
		}
		env := &envelope.Message{IAT: exp - 60, EXP: exp}
		m := &store.Message{
			Status:        statuses[rng.IntN(len(statuses))],
			RetentionDays: rng.IntN(4) - 1, // -1, 0 (none), 1 or 2 days
			Expires:       env.ExpiresAt(),
			CreatedAt:     created,
		}
		m.Purged = m.Status != store.StatusDenied && m.RetentionDays > 0 && rng.IntN(3) == 0
		// now: around exp, around the end of retention, or anywhere.
		var now time.Time
		switch rng.IntN(4) {
		case 3: // within nanoseconds of exp: the float's rounding
			now = m.Expires.Add(time.Duration(rng.Int64N(600) - 300))
			if rng.IntN(2) == 0 {
				now = m.Expires.Add(time.Duration(rng.Int64N(7) - 3))
			}
		case 0:
			now = m.Expires.Add(time.Duration(rng.Int64N(4e9) - 2e9))
		case 1:
			now = created.Add(time.Duration(max(m.RetentionDays, 0)) * day).Add(time.Duration(rng.Int64N(4e9) - 2e9))
		default:
			now = created.Add(time.Duration(rng.Int64N(int64(4 * day))))
		}

		r := m.Retire(now)
		expired := env.CheckTime(now, envelope.Profile{ClockSkew: 1 << 62}) != nil
		retentionOver := m.RetentionDays > 0 && !now.Before(created.Add(time.Duration(m.RetentionDays)*day))
		accepted := m.Status != store.StatusDenied
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("case %d: %+v (exp %.9f) at %v → %+v: "+format, append([]any{i, *m, exp, now, r}, a...)...)
		}
		// Safety.
		if r.Forget && !expired {
			fail("forgotten while the exchange still takes the message as unexpired")
		}
		if r.Forget && m.RetentionDays > 0 && !retentionOver {
			fail("forgotten before its retention period ended")
		}
		if (r.Forget || r.Purge) && accepted && m.RetentionDays <= 0 {
			fail("an accepted message without a retention period lost something")
		}
		if r.Purge && (!accepted || m.Purged || !retentionOver) {
			fail("purged when it was not due")
		}
		if r.Forget && accepted && !m.Purged && !r.Purge {
			fail("forgotten with its payloads kept")
		}
		if !r.Next.IsZero() && (r.Forget || !r.Next.After(now)) {
			fail("next step not in the future")
		}
		// Liveness: whatever is due happens now, and what is not is
		// scheduled at the exact time the rule names.
		expiry := m.Expires
		purgeAt := created.AddDate(0, 0, m.RetentionDays)
		forgetAt := expiry
		if m.RetentionDays > 0 && purgeAt.After(forgetAt) {
			forgetAt = purgeAt
		}
		switch {
		case accepted && m.RetentionDays <= 0:
			if r != (store.Retirement{}) {
				fail("want nothing, ever")
			}
		case accepted && !m.Purged && now.Before(purgeAt):
			if r.Purge || r.Forget || !r.Next.Equal(purgeAt) {
				fail("want the purge scheduled at %v", purgeAt)
			}
		case now.Before(forgetAt):
			if r.Forget || r.Purge != (accepted && !m.Purged) || !r.Next.Equal(forgetAt) {
				fail("want the payloads purged if still there and the rest scheduled at %v", forgetAt)
			}
		default:
			if !r.Forget || r.Purge != (accepted && !m.Purged) {
				fail("want it forgotten (and purged if still there)")
			}
		}
	}
}

// ForgetAt on the cases the rule names.
func TestForgetAt(t *testing.T) {
	t.Parallel()
	created := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	exp := created.Add(time.Hour).Truncate(time.Second)
	cases := []struct {
		name      string
		status    string
		days      int
		expires   time.Time
		want      time.Time
		forgotten bool
	}{
		{"accepted: the end of retention, later than exp", store.StatusAccepted, 30, exp, created.AddDate(0, 0, 30), true},
		{"delivered: the same", store.StatusDelivered, 30, exp, created.AddDate(0, 0, 30), true},
		{"accepted: exp, later than the end of retention", store.StatusAccepted, 1, created.Add(25 * time.Hour).Truncate(time.Second), created.Add(25 * time.Hour).Truncate(time.Second), true},
		{"accepted without retention: never", store.StatusAccepted, 0, exp, time.Time{}, false},
		{"denied without retention: exp", store.StatusDenied, 0, exp, exp, true},
		{"denied with retention: the end of retention", store.StatusDenied, 30, exp, created.AddDate(0, 0, 30), true},
		{"denied, fractional exp: exp", store.StatusDenied, 0, exp.Add(1500 * time.Microsecond), exp.Add(1500 * time.Microsecond), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &store.Message{Status: tc.status, RetentionDays: tc.days, Expires: tc.expires, CreatedAt: created}
			at, ok := m.ForgetAt()
			if ok != tc.forgotten || !at.Equal(tc.want) {
				t.Errorf("ForgetAt = %v, %v; want %v, %v", at, ok, tc.want, tc.forgotten)
			}
		})
	}
}
