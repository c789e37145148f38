package redis

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// ConsentRecipients implements store.Consents.
func (s *Store) ConsentRecipients(ctx context.Context, from, consentID string) ([]string, error) {
	if store.ValidKeys(from, consentID) != nil {
		return []string{}, nil
	}
	out, err := s.c.SMembers(ctx, s.consentKey(from, consentID)).Result()
	if err != nil {
		return nil, unavailable("consent recipients", err)
	}
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out, nil
}

// WithdrawConsent implements store.Consents. The first withdrawal's time is
// kept.
func (s *Store) WithdrawConsent(ctx context.Context, from, consentID string, now time.Time) error {
	if err := store.ValidKeys(from, consentID); err != nil {
		return fmt.Errorf("redis: withdraw consent: %w", err)
	}
	if err := s.writable(ctx); err != nil {
		return err
	}
	if err := s.c.SetNX(ctx, s.withdrawnKey(from, consentID), formatTime(now), 0).Err(); err != nil {
		return unavailable("withdraw consent", err)
	}
	return nil
}

// ConsentWithdrawn implements store.Consents.
func (s *Store) ConsentWithdrawn(ctx context.Context, from, consentID string) (bool, error) {
	if store.ValidKeys(from, consentID) != nil {
		return false, nil
	}
	n, err := s.c.Exists(ctx, s.withdrawnKey(from, consentID)).Result()
	if err != nil {
		return false, unavailable("consent withdrawn", err)
	}
	return n == 1, nil
}
