package store_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// compactingRetention is a Retention that answers a fixed purge and counts
// its compactions.
type compactingRetention struct {
	purged    []store.Purged
	compacted int
}

func (r *compactingRetention) Purge(context.Context, time.Time) ([]store.Purged, error) {
	return r.purged, nil
}

func (r *compactingRetention) Compact(context.Context) error { r.compacted++; return nil }

// The file is compacted when payloads went (their bytes must leave it),
// not for forgotten metadata alone.
func TestPurgeDueCompactsAfterPayloads(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		purged  []store.Purged
		compact int
	}{
		{"nothing due", nil, 0},
		{"metadata only", []store.Purged{{From: "a", ID: "1", Forgotten: true}}, 0},
		{"payloads", []store.Purged{{From: "a", ID: "1", Forgotten: true}, {From: "a", ID: "2", Payloads: true, Deliveries: 1}}, 1},
	}
	for _, tc := range cases {
		r := &compactingRetention{purged: tc.purged}
		got, err := store.PurgeDue(context.Background(), r, time.Now(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil || len(got) != len(tc.purged) {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
		}
		if r.compacted != tc.compact {
			t.Errorf("%s: compacted %d times, want %d", tc.name, r.compacted, tc.compact)
		}
	}
}
