//go:build unix

package gateway

import "syscall"

// writable says whether this process may make files in dir, without
// making one.
func writable(dir string) bool {
	const wOK = 2
	return syscall.Access(dir, wOK) == nil
}
