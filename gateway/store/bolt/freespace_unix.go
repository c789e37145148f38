//go:build unix

package bolt

import (
	"path/filepath"
	"syscall"
)

// freeBytes is the space left to an unprivileged writer on the file
// system of the store's file.
func freeBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
