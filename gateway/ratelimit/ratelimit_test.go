package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/ratelimit"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 10, 0, time.UTC)
	l := &ratelimit.Limiter{
		Default:   ratelimit.Quota{Limit: 3, Window: time.Minute},
		PerSender: map[string]ratelimit.Quota{"UN-UNICEF": {Limit: 1, Window: time.Minute}, "UN-IOM": {}},
		Counter:   &ratelimit.Memory{},
		Clock:     func() time.Time { return now },
	}
	ctx := context.Background()
	steps := []struct {
		sender string
		want   time.Duration
	}{
		{"KZ-MFA", 0}, {"KZ-MFA", 0}, {"KZ-MFA", 0}, {"KZ-MFA", 50 * time.Second},
		{"UN-UNICEF", 0}, {"UN-UNICEF", 50 * time.Second},
		{"UN-IOM", 0}, {"UN-IOM", 0}, {"UN-IOM", 0}, {"UN-IOM", 0}, // unlimited override
	}
	for i, s := range steps {
		got, err := l.Wait(ctx, s.sender)
		if err != nil || got != s.want {
			t.Fatalf("step %d (%s): wait %v %v, want %v", i, s.sender, got, err, s.want)
		}
	}
	now = now.Add(time.Minute) // next window
	if got, _ := l.Wait(ctx, "KZ-MFA"); got != 0 {
		t.Errorf("new window still limited: %v", got)
	}
}
