package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/edge"
	"github.com/xborder/xborder/gateway/envelope"
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
			tuneMemory()
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

// edgeAudit is `xborder audit verify|export --config EDGE_CONFIG`: through
// the running edge's operator listener (with its operator token), or on
// its store file when no edge answers. The chain's checkpoints are signed
// with the participant's key, so that key's public half verifies it.
func edgeAudit(ctx context.Context, f opsFlags, export bool, out io.Writer, stdout, stderr io.Writer) error {
	cfg, err := config.LoadEdge(f.cfgPath, "")
	if err != nil {
		return err
	}
	signer, err := envelope.LoadPrivateJWK(filepath.Join(cfg.ParticipantKeys, "sign.jwk"))
	if err != nil {
		return fmt.Errorf("audit: the participant's key: %w", err)
	}
	keys := audit.KeyFunc(signer.Public())
	t := &gatewayTarget{base: strings.TrimRight(f.ops, "/"), tokenFile: f.tokenFile, stderr: stderr}
	if t.base == "" {
		t.base = "http://" + dialable(cfg.OpsListen)
	}
	if t.tokenFile == "" {
		t.tokenFile = cfg.OpsTokenFile
	}
	var exported bytes.Buffer
	if t.running(ctx) {
		fmt.Fprintf(stderr, "xborder: using the running edge's operator listener at %s\n", t.base)
		resp, err := t.call(ctx, http.MethodGet, "/audit/export", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(&exported, resp.Body); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	} else {
		fmt.Fprintf(stderr, "xborder: no edge answers at %s; reading the store %s directly\n", t.base, cfg.StorePath())
		if _, err := os.Stat(cfg.StorePath()); err != nil {
			return fmt.Errorf("no edge answers at %s and there is no store file at %s", t.base, cfg.StorePath())
		}
		st, err := edge.OpenStore(cfg.StorePath(), "edge-"+cfg.Participant, time.Now)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := audit.Export(ctx, st, &exported, signer); err != nil {
			return err
		}
	}
	if export {
		_, err := out.Write(exported.Bytes())
		return err
	}
	s, err := audit.VerifyExport(&exported, keys)
	if err != nil {
		return broken(stdout, err)
	}
	printSummary(stdout, s)
	fmt.Fprintln(stdout, "audit log verified")
	return nil
}
