package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// PurgeDue deletes the payloads of every message whose retention period
// has ended by now (R13), keeping their metadata; the store appends each
// purge's audit entry with it. A store that keeps deleted bytes in freed
// pages (bbolt) is then compacted, so that the purged bytes are gone from
// the file.
func PurgeDue(ctx context.Context, st Retention, now time.Time, log *slog.Logger) ([]Purged, error) {
	purged, err := st.Purge(ctx, now)
	if len(purged) == 0 {
		return purged, err
	}
	log.Info("retention purge", "messages", len(purged))
	if c, ok := st.(interface{ Compact(context.Context) error }); ok {
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
