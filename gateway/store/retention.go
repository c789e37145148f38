package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// PurgeDue deletes the payloads of every message whose retention period
// has ended by now (R13), and the metadata of every message past both that
// and its exp (Retention.Purge); the store appends each step's audit entry
// with it. A store that keeps deleted bytes in freed pages (bbolt) is then
// compacted when payloads were purged, so that their bytes are gone from
// the file. Forgotten metadata alone (ids, digests, the receipt) does not
// call for a compaction, which rewrites the whole file while every other
// operation waits: the store reuses the pages it freed.
func PurgeDue(ctx context.Context, st Retention, now time.Time, log *slog.Logger) ([]Purged, error) {
	purged, err := st.Purge(ctx, now)
	if len(purged) == 0 {
		return purged, err
	}
	payloads, forgotten := 0, 0
	for _, p := range purged {
		if p.Payloads {
			payloads++
		}
		if p.Forgotten {
			forgotten++
		}
	}
	log.Info("retention purge", "messages", len(purged), "payloads_purged", payloads, "forgotten", forgotten)
	if c, ok := st.(interface{ Compact(context.Context) error }); ok && payloads > 0 {
		if cerr := c.Compact(ctx); cerr != nil {
			log.Error("compaction after purge failed", "error", cerr)
			err = errors.Join(err, cerr)
		}
	}
	return purged, err
}

// RunRetention purges what is due at once and then every interval, until
// ctx ends.
func RunRetention(ctx context.Context, st Retention, every time.Duration, log *slog.Logger) {
	purge := func() {
		if _, err := PurgeDue(ctx, st, time.Now(), log); err != nil && ctx.Err() == nil {
			log.Error("retention purge failed", "error", err)
		}
	}
	purge()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			purge()
		}
	}
}
