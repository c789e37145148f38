// Command readmegen writes the configuration references generated from
// gateway/config — the gateway's and the edge's — into the README given as
// its argument (go generate ./gateway/config).
package main

import (
	"fmt"
	"os"

	"github.com/xborder/xborder/gateway/config"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: readmegen README.md")
		os.Exit(2)
	}
	path := os.Args[1]
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := config.WithReference(b)
	if err == nil {
		out, err = config.WithEdgeReference(out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
