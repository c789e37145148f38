package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway/config"
)

// newDeadLetters lists and re-queues dead letters through the gateway's
// operator listener (the store itself may be locked by the running gateway).
func newDeadLetters(stdout io.Writer) *cobra.Command {
	var cfgPath, ops, requeue string
	c := &cobra.Command{
		Use:   "deadletters [--config FILE | --ops URL] [--requeue RECIPIENT/DELIVERY_ID]",
		Short: "List dead-lettered deliveries, or re-queue one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ops == "" {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return err
				}
				ops = "http://" + cfg.OpsListen
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			method, path := http.MethodGet, "/deadletters"
			if requeue != "" {
				recipient, id, ok := strings.Cut(requeue, "/")
				if !ok || recipient == "" || id == "" || strings.Contains(id, "/") {
					return fmt.Errorf("--requeue wants RECIPIENT/DELIVERY_ID")
				}
				method, path = http.MethodPost, "/deadletters/"+recipient+"/"+id+"/requeue"
			}
			req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(ops, "/")+path, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			switch {
			case requeue != "" && resp.StatusCode == http.StatusNoContent:
				fmt.Fprintf(stdout, "requeued %s\n", requeue)
				return nil
			case resp.StatusCode == http.StatusOK:
				printJSON(stdout, body)
				return nil
			}
			printJSON(stdout, body)
			return exitError{1}
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (for ops_listen)")
	c.Flags().StringVar(&ops, "ops", "", "operator listener base URL (default: http:// + the config's ops_listen)")
	c.Flags().StringVar(&requeue, "requeue", "", "RECIPIENT/DELIVERY_ID to put back in its queue")
	return c
}
