package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/store"
)

// newDeadLetters lists and re-queues dead letters: through a running
// gateway's operator listener (with the operator token), or in the store
// itself when no gateway answers (opsclient.go).
func newDeadLetters(stdout, stderr io.Writer) *cobra.Command {
	var f opsFlags
	var requeue string
	c := &cobra.Command{
		Use:   "deadletters [--config FILE [--offline] | --ops URL [--ops-token-file FILE]] [--requeue RECIPIENT/DELIVERY_ID]",
		Short: "List dead-lettered deliveries, or re-queue one (through a running gateway, or in a stopped one's store with --offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var recipient, id string
			if requeue != "" {
				var ok bool
				recipient, id, ok = strings.Cut(requeue, "/")
				if !ok || recipient == "" || id == "" || strings.Contains(id, "/") {
					return fmt.Errorf("--requeue wants RECIPIENT/DELIVERY_ID")
				}
			}
			t, err := f.target(stderr)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			viaGateway, err := t.useGateway(ctx)
			if err != nil {
				return err
			}
			if viaGateway {
				return deadLettersViaGateway(ctx, t, stdout, requeue, recipient, id)
			}
			return deadLettersInStore(ctx, t, stdout, requeue, recipient, id)
		},
	}
	f.add(c, "gateway configuration (its ops_listen, ops_token_file and, with --offline, its store)")
	c.Flags().StringVar(&requeue, "requeue", "", "RECIPIENT/DELIVERY_ID to put back in its queue")
	return c
}

func deadLettersViaGateway(ctx context.Context, t *gatewayTarget, stdout io.Writer, requeue, recipient, id string) error {
	method, path := http.MethodGet, "/deadletters"
	if requeue != "" {
		method, path = http.MethodPost, "/deadletters/"+recipient+"/"+id+"/requeue"
	}
	resp, err := t.call(ctx, method, path, nil)
	var p *opsProblem
	if errors.As(err, &p) && p.Code == "not_found" {
		// The same words as in the store (deadLettersInStore).
		fmt.Fprintf(stdout, "no dead letter %s\n", requeue)
		return exitError{1}
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if requeue != "" {
		fmt.Fprintf(stdout, "requeued %s\n", requeue)
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	printJSON(stdout, body)
	return nil
}

func deadLettersInStore(ctx context.Context, t *gatewayTarget, stdout io.Writer, requeue, recipient, id string) error {
	if err := t.storeMissing(); err != nil {
		return err
	}
	st, err := gateway.OpenStore(ctx, t.cfg, gateway.StoreOptions{Replica: gateway.Replica(t.cfg)})
	if err != nil {
		return t.storeError(err)
	}
	defer st.Close()
	if requeue != "" {
		err := st.Requeue(ctx, recipient, id, time.Now())
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stdout, "no dead letter %s\n", requeue)
			return exitError{1}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "requeued %s\n", requeue)
		return nil
	}
	ds, err := st.DeadLetters(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(api.DeadLetterList(ds))
	if err != nil {
		return err
	}
	printJSON(stdout, b)
	return nil
}
