package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the server when the test process dies, so that a
// crashed or interrupted test run leaves no redis-server behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
