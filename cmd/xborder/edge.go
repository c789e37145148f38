package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/edge"
)

// newEdge is `xborder edge`: a participant's own gateway (gateway/edge).
func newEdge(stdout, stderr io.Writer) *cobra.Command {
	var cfgPath, as string
	c := &cobra.Command{
		Use:   "edge [--config FILE | --as ID]",
		Short: "Run a participant's own gateway: a local plain-JSON API, the participant's keys kept at home",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" && as == "" {
				return fmt.Errorf("give --config FILE, or --as ID for the development setup (e.g. --as KZ-MJ)")
			}
			cfg, err := config.LoadEdge(cfgPath, as)
			if err != nil {
				return err
			}
			log := newLogger(stderr, "info")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			e, err := edge.New(ctx, cfg, log, edge.Options{})
			if err != nil {
				return err
			}
			if err := e.Listen(); err != nil {
				e.Close()
				return err
			}
			fmt.Fprintln(stdout, e.Summary())
			return e.Serve(ctx)
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "edge configuration file (YAML; README \"Connecting an agency\")")
	c.Flags().StringVar(&as, "as", "", "participant id: with no --config, the development setup (certs/dev/ID, the hub at https://127.0.0.1:8443)")
	_ = c.RegisterFlagCompletionFunc("as", completeParticipants)
	return c
}

// opsListenOf is the operator listener of the gateway or edge a --config
// names.
func opsListenOf(cfgPath string) (string, error) {
	if cfgPath != "" && config.IsEdgeFile(cfgPath) {
		cfg, err := config.LoadEdge(cfgPath, "")
		if err != nil {
			return "", err
		}
		return cfg.OpsListen, nil
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return "", err
	}
	return cfg.OpsListen, nil
}
