package audit

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
)

// OpenBackend opens the audit log beside the message store the
// configuration names (config.Config.Store): for bolt:PATH the file
// audit.db in PATH's folder, for redis:// the same server under the prefix
// "xborder:audit:".
func OpenBackend(ctx context.Context, store string, readOnly bool) (Backend, error) {
	if p, ok := strings.CutPrefix(store, "bolt:"); ok {
		return OpenBolt(BoltPath(p), BoltOptions{ReadOnly: readOnly})
	}
	if strings.HasPrefix(store, "redis://") || strings.HasPrefix(store, "rediss://") {
		return OpenRedis(ctx, store, RedisOptions{})
	}
	return nil, errors.New("audit: store is neither bolt:PATH nor redis://")
}

// BoltPath is the audit file beside the message store file storePath.
func BoltPath(storePath string) string {
	return filepath.Join(filepath.Dir(storePath), "audit.db")
}
