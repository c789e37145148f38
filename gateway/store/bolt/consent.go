package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/store"
)

// indexConsent records the recipients of ds under (from, consentID).
func indexConsent(tx *bbolt.Tx, from, consentID string, ds []store.Delivery) error {
	b := tx.Bucket(bucketConsents)
	prefix := append(pairKey(from, consentID), 0)
	for _, d := range ds {
		k := append(bytes.Clone(prefix), d.Recipient...)
		if err := b.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// ConsentRecipients implements store.Consents.
func (s *Store) ConsentRecipients(ctx context.Context, from, consentID string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable("consent recipients", err)
	}
	out := []string{}
	if store.ValidKeys(from, consentID) != nil {
		return out, nil
	}
	prefix := append(pairKey(from, consentID), 0)
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketConsents).Cursor()
		// Keys are sorted and distinct, and so are their suffixes.
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, string(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("consent recipients", err)
	}
	return out, nil
}

// WithdrawConsent implements store.Consents. The first withdrawal's time is
// kept.
func (s *Store) WithdrawConsent(ctx context.Context, from, consentID string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return unavailable("withdraw consent", err)
	}
	if err := store.ValidKeys(from, consentID); err != nil {
		return fmt.Errorf("bolt: withdraw consent: %w", err)
	}
	err := s.update(func(tx *bbolt.Tx) error {
		if s.opts.Fault != nil {
			if err := s.opts.Fault("withdraw consent"); err != nil {
				return err
			}
		}
		b, k := tx.Bucket(bucketWithdrawn), pairKey(from, consentID)
		if b.Get(k) != nil {
			return errRollback
		}
		return b.Put(k, []byte(now.UTC().Format(time.RFC3339Nano)))
	})
	if err != nil && !errors.Is(err, errRollback) {
		return s.failed("withdraw consent", err)
	}
	return nil
}

// ConsentWithdrawn implements store.Consents.
func (s *Store) ConsentWithdrawn(ctx context.Context, from, consentID string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, unavailable("consent withdrawn", err)
	}
	if store.ValidKeys(from, consentID) != nil {
		return false, nil
	}
	var found bool
	err := s.view(func(tx *bbolt.Tx) error {
		found = tx.Bucket(bucketWithdrawn).Get(pairKey(from, consentID)) != nil
		return nil
	})
	if err != nil {
		return false, unavailable("consent withdrawn", err)
	}
	return found, nil
}
