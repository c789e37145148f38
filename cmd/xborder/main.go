// Command xborder is the gateway and its tools: serve, pki, send, inbox,
// policy. Subcommands are wired in commands.go.
package main

import (
	"os"

	"github.com/xborder/xborder/gateway/policy/worker"
)

func main() {
	// "xborder policy worker" is the process candidates are evaluated in:
	// it must bound itself before anything else runs (worker.Main).
	worker.RunIfChild()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
