package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/store"
)

// newStore is `xborder store check`.
func newStore(stdout io.Writer) *cobra.Command {
	c := &cobra.Command{Use: "store", Short: "Check the gateway's store"}
	c.AddCommand(newStoreCheck(stdout))
	return c
}

// checker is a store that can read itself through (bolt.Store,
// redis.Store).
type checker interface {
	Check(ctx context.Context, w io.Writer) error
}

func newStoreCheck(stdout io.Writer) *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Read the whole store (pages, every record, the audit chains); exit 1 with the first problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			keys, err := gatewayVerifyKeys(cfg.GatewayKeys)
			if err != nil {
				return err
			}
			problem := func(err error) error {
				fmt.Fprintf(stdout, "PROBLEM: %v\n", err)
				return exitError{1}
			}
			s, err := gateway.OpenStore(ctx, cfg, gateway.StoreOptions{ReadOnly: true})
			if errors.Is(err, store.ErrDamaged) {
				return problem(err)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			ck, ok := s.(checker)
			if !ok {
				return fmt.Errorf("store check: %s stores cannot be checked", storeKindOf(cfg))
			}
			if err := ck.Check(ctx, stdout); err != nil {
				if errors.Is(err, store.ErrDamaged) {
					return problem(err)
				}
				return err
			}
			sum, err := audit.VerifyLive(ctx, s, keys)
			if err != nil {
				var ae *audit.Error
				if errors.As(err, &ae) || errors.Is(err, store.ErrDamaged) {
					return problem(err)
				}
				return err
			}
			printSummary(stdout, sum)
			fmt.Fprintln(stdout, "store checked: no problem found")
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (its store and key folder)")
	return c
}

func storeKindOf(cfg config.Config) string { k, _ := cfg.StoreKind(); return k }
