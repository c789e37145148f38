package audit

import "path/filepath"

// LegacyBoltPath is where versions before the audit log moved into the
// store's file kept it: audit.db beside the store file storePath.
func LegacyBoltPath(storePath string) string {
	return filepath.Join(filepath.Dir(storePath), "audit.db")
}
