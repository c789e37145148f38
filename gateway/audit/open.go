package audit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
)

// OpenBackend opens the audit log of the message store the configuration
// names (config.Config.Store): for bolt:PATH the store's file itself (its
// "chains" bucket), for redis:// the same server under the prefix
// "xborder:audit:". A running gateway opens the bolt log on its store
// instead (NewBoltOn), to write an acceptance and its entry together.
func OpenBackend(ctx context.Context, store string, readOnly bool) (Backend, error) {
	if p, ok := strings.CutPrefix(store, "bolt:"); ok {
		return OpenBolt(p, BoltOptions{ReadOnly: readOnly})
	}
	if strings.HasPrefix(store, "redis://") || strings.HasPrefix(store, "rediss://") {
		return OpenRedis(ctx, store, RedisOptions{})
	}
	return nil, errors.New("audit: store is neither bolt:PATH nor redis://")
}

// LegacyBoltPath is where versions before the audit log moved into the
// store's file kept it: audit.db beside the store file storePath.
func LegacyBoltPath(storePath string) string {
	return filepath.Join(filepath.Dir(storePath), "audit.db")
}
