// Command xborder is the gateway and its tools: serve, pki, send, inbox,
// policy. Subcommands are wired in commands.go.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
