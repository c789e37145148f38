package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
)

// newAudit is `xborder audit verify|export|subject`.
func newAudit(stdout io.Writer) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Verify, export and query the audit log"}
	c.AddCommand(newAuditVerify(stdout), newAuditExport(stdout), newAuditSubject(stdout))
	return c
}

// openAuditLog opens the configured store, which keeps the audit log, for
// reading (an embedded store while the gateway is stopped).
func openAuditLog(ctx context.Context, cfg config.Config) (audit.Backend, error) {
	return gateway.OpenStore(ctx, cfg, gateway.StoreOptions{ReadOnly: true})
}

// gatewayVerifyKeys reads the gateway's signing keys from its key folder:
// sign.jwk (or sign.pub.jwk) and the earlier sign.*.pub.jwk kept after a
// rotation, so that old checkpoints still verify.
func gatewayVerifyKeys(dir string) (envelope.KeyFunc, error) {
	var keys []*envelope.PublicKey
	if k, err := envelope.LoadPrivateJWK(filepath.Join(dir, "sign.jwk")); err == nil {
		keys = append(keys, k.Public())
	}
	pubs, _ := filepath.Glob(filepath.Join(dir, "sign.*pub.jwk"))
	for _, p := range pubs {
		k, err := envelope.LoadPublicJWK(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("audit: no signing key (sign.jwk, sign.pub.jwk) in %s", dir)
	}
	return audit.KeyFunc(keys...), nil
}

// jwksKeys reads a JWKS from a file, or from an https:// URL through the
// gateway's mTLS as participant as (material in pkiDir).
func jwksKeys(ctx context.Context, src, as, pkiDir string) (envelope.KeyFunc, error) {
	var data []byte
	if strings.HasPrefix(src, "https://") {
		if as == "" {
			return nil, errors.New("audit: --jwks URL needs --as ID (and --pki DIR) for the client certificate")
		}
		u, err := url.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("audit: --jwks: %w", err)
		}
		me, err := client.LoadIdentity(pkiDir, as)
		if err != nil {
			return nil, err
		}
		path := u.EscapedPath()
		if path == "" || path == "/" {
			path = "/v1/jwks"
		}
		r, err := client.New(u.Scheme+"://"+u.Host, me).Do(ctx, http.MethodGet, path, "", nil)
		if err != nil {
			return nil, err
		}
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("audit: --jwks: HTTP %d", r.Status)
		}
		data = r.Body
	} else {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("audit: --jwks: %w", err)
		}
		data = b
	}
	keys, err := envelope.ParseJWKS(data)
	if err != nil {
		return nil, err
	}
	return audit.KeyFunc(keys...), nil
}

// broken reports a failed verification: the first bad entry, exit code 1.
func broken(stdout io.Writer, err error) error {
	var ae *audit.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(stdout, "BROKEN: %v\n", err)
		return exitError{1}
	}
	return err
}

func printSummary(w io.Writer, s audit.Summary) {
	for _, r := range s.Replicas {
		head := r.Head
		if len(head) > 16 {
			head = head[:16] + "…"
		}
		fmt.Fprintf(w, "%s: %d entries, %d checkpoints, head %s: ok\n", r.Replica, r.Count, r.Checkpoints, head)
	}
}

func newAuditVerify(stdout io.Writer) *cobra.Command {
	var cfgPath, file, jwks, as, pkiDir string
	c := &cobra.Command{
		Use:   "verify [--config FILE] [--file EXPORT [--jwks FILE|URL]]",
		Short: "Check the live audit log, or an export offline (exit 1 and the first bad entry if broken)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			withConfig := cmd.Flags().Changed("config")
			cfg, err := config.Load(cfgPath)
			if err != nil && (withConfig || jwks == "") {
				return err
			}
			var keys envelope.KeyFunc
			if jwks != "" {
				keys, err = jwksKeys(ctx, jwks, as, pkiDir)
			} else {
				keys, err = gatewayVerifyKeys(cfg.GatewayKeys)
			}
			if err != nil {
				return err
			}
			if file == "" {
				b, err := openAuditLog(ctx, cfg)
				if err != nil {
					return err
				}
				defer b.Close()
				s, err := audit.VerifyLive(ctx, b, keys)
				if err != nil {
					return broken(stdout, err)
				}
				printSummary(stdout, s)
				fmt.Fprintln(stdout, "audit log verified")
				return nil
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			defer f.Close()
			s, err := audit.VerifyExport(f, keys)
			if err != nil {
				return broken(stdout, err)
			}
			printSummary(stdout, s)
			if withConfig {
				b, err := openAuditLog(ctx, cfg)
				if err != nil {
					return err
				}
				defer b.Close()
				if err := audit.CompareLive(ctx, s, b); err != nil {
					return broken(stdout, err)
				}
				fmt.Fprintln(stdout, "export verified and consistent with the live log")
				return nil
			}
			fmt.Fprintln(stdout, "export verified")
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (its store and key folder); with --file, also compare with the live log")
	c.Flags().StringVar(&file, "file", "", "an export (xborder audit export) to check offline")
	c.Flags().StringVar(&jwks, "jwks", "", "the gateway's public keys: a JWKS file, or its https://…/v1/jwks URL (with --as, --pki)")
	c.Flags().StringVar(&as, "as", "", "participant id whose client certificate fetches a --jwks URL")
	c.Flags().StringVar(&pkiDir, "pki", "certs/dev", "folder of the --as participant's material")
	return c
}

func newAuditExport(stdout io.Writer) *cobra.Command {
	var cfgPath, out string
	c := &cobra.Command{
		Use:   "export [--config FILE] [--out FILE]",
		Short: "Write the audit log as JSON lines, ending with a checkpoint signed now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			key, err := envelope.LoadPrivateJWK(filepath.Join(cfg.GatewayKeys, "sign.jwk"))
			if err != nil {
				return err
			}
			b, err := openAuditLog(ctx, cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			if out == "" || out == "-" {
				return audit.Export(ctx, b, stdout, key)
			}
			f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if err := audit.Export(ctx, b, f, key); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (its store and key folder)")
	c.Flags().StringVarP(&out, "out", "o", "", "output file (default: standard output)")
	return c
}

func newAuditSubject(stdout io.Writer) *cobra.Command {
	var cfgPath, ref string
	var asJSON bool
	c := &cobra.Command{
		Use:   "subject --ref REF [--config FILE]",
		Short: "List who received which data categories about one subject, when, why and under which decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			key, err := audit.LoadKey(filepath.Join(cfg.GatewayKeys, "audit.key"))
			if err != nil {
				return err
			}
			b, err := openAuditLog(ctx, cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			entries, err := audit.Subject(ctx, b, audit.SubjectHash(key, ref))
			if err != nil {
				return err
			}
			if asJSON {
				w := bufio.NewWriter(stdout)
				enc := json.NewEncoder(w)
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return w.Flush()
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tFROM\tTO\tPURPOSE\tCATEGORIES\tDECISION")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Kind, e.From, e.To,
					e.Purpose, strings.Join(e.Categories, ","), e.DecisionID)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d entries\n", len(entries))
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (its store and key folder)")
	c.Flags().StringVar(&ref, "ref", "", "the subject reference (subject.ref); it is hashed, never stored")
	c.Flags().BoolVar(&asJSON, "json", false, "print the entries as JSON lines")
	_ = c.MarkFlagRequired("ref")
	return c
}
