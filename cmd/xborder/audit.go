package main

import (
	"bufio"
	"bytes"
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
	"github.com/xborder/xborder/gateway/store"
)

// newAudit is `xborder audit verify|export|subject`. Each works through a
// running gateway's operator listener, or on the store when no gateway
// answers (opsclient.go), and says on stderr which.
func newAudit(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Verify, export and query the audit log"}
	c.AddCommand(newAuditVerify(stdout, stderr), newAuditExport(stdout, stderr), newAuditSubject(stdout, stderr))
	return c
}

// openAuditLog opens t's store, which keeps the audit log, read-only, for
// a command that runs while no gateway answers; a missing embedded store
// file or one that cannot be opened is explained (storeError).
func (t *gatewayTarget) openAuditLog(ctx context.Context) (audit.Backend, error) {
	if err := t.storeMissing(); err != nil {
		return nil, err
	}
	b, err := gateway.OpenStore(ctx, t.cfg, gateway.StoreOptions{ReadOnly: true})
	if err != nil {
		return nil, t.storeError(err)
	}
	return b, nil
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
	keys, err := parseVerifyKeys(data)
	if err != nil {
		return nil, fmt.Errorf("audit: --jwks %s: %w", src, err)
	}
	return audit.KeyFunc(keys...), nil
}

// parseVerifyKeys reads a JWK set ({"keys": [...]}) or one JWK (such as
// gateway/sign.pub.jwk; of a private JWK, its public half).
func parseVerifyKeys(data []byte) ([]*envelope.PublicKey, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
		Kty  string          `json:"kty"`
		D    string          `json:"d"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch {
	case probe.Keys != nil:
		return envelope.ParseJWKS(data)
	case probe.Kty != "" && probe.D != "":
		k, err := envelope.ParsePrivateJWK(data)
		if err != nil {
			return nil, err
		}
		return []*envelope.PublicKey{k.Public()}, nil
	case probe.Kty != "":
		k, err := envelope.ParsePublicJWK(data)
		if err != nil {
			return nil, err
		}
		return []*envelope.PublicKey{k}, nil
	}
	return nil, errors.New(`neither a JWK set ({"keys": [...]}) nor one JWK`)
}

// broken reports a failed verification: the first bad entry (or record of
// the store that does not decode), exit code 1.
func broken(stdout io.Writer, err error) error {
	var ae *audit.Error
	if errors.As(err, &ae) || errors.Is(err, store.ErrDamaged) {
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

func newAuditVerify(stdout, stderr io.Writer) *cobra.Command {
	var f opsFlags
	var file, jwks, as, pkiDir string
	c := &cobra.Command{
		Use:   "verify [--config FILE [--offline] | --ops URL] [--file EXPORT [--jwks FILE|URL]]",
		Short: "Check the live audit log, or an export offline (exit 1 and the first bad entry if broken)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if file == "" && config.IsEdgeFile(f.cfgPath) {
				return edgeAudit(ctx, f, false, nil, stdout, stderr)
			}
			// With --file, the live log is read only to compare with it.
			live := file == "" || cmd.Flags().Changed("config") || cmd.Flags().Changed("ops")
			t, err := f.target(stderr)
			if err != nil && (live || jwks == "") {
				return err
			}
			// Which way the live log is read is settled first: a gateway
			// named but not answering is the first thing to say.
			var viaGateway bool
			if live {
				if viaGateway, err = t.useGateway(ctx); err != nil {
					return err
				}
				if !viaGateway {
					if err := t.storeMissing(); err != nil {
						return err
					}
				}
			}
			var keys envelope.KeyFunc
			if jwks != "" {
				keys, err = jwksKeys(ctx, jwks, as, pkiDir)
			} else {
				keys, err = gatewayVerifyKeys(t.cfg.GatewayKeys)
				if err != nil {
					err = fmt.Errorf("%w (or give the gateway's public keys with --jwks FILE)", err)
				}
			}
			if err != nil {
				return err
			}
			var s audit.Summary
			if file != "" {
				fh, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("audit: %w", err)
				}
				defer fh.Close()
				if s, err = audit.VerifyExport(fh, keys); err != nil {
					return broken(stdout, err)
				}
				printSummary(stdout, s)
				if !live {
					fmt.Fprintln(stdout, "export verified")
					return nil
				}
			}
			b, err := t.liveLog(ctx, keys, viaGateway)
			if err != nil {
				return broken(stdout, err)
			}
			defer b.Close()
			if file == "" {
				if s, err = b.verify(ctx); err != nil {
					return broken(stdout, err)
				}
				printSummary(stdout, s)
				fmt.Fprintln(stdout, "audit log verified")
				return nil
			}
			if err := audit.CompareLive(ctx, s, b.Backend); err != nil {
				return broken(stdout, err)
			}
			fmt.Fprintln(stdout, "export verified and consistent with the live log")
			return nil
		},
	}
	f.add(c, "gateway configuration (its operator listener, store and key folder); with --file, also compare with the live log")
	c.Flags().StringVar(&file, "file", "", "an export (xborder audit export) to check offline")
	c.Flags().StringVar(&jwks, "jwks", "", "the gateway's public keys: a JWKS or one JWK file (gateway/sign.pub.jwk), or its https://…/v1/jwks URL (with --as, --pki)")
	c.Flags().StringVar(&as, "as", "", "participant id whose client certificate fetches a --jwks URL")
	c.Flags().StringVar(&pkiDir, "pki", "certs/dev", "folder of the --as participant's material")
	return c
}

func newAuditExport(stdout, stderr io.Writer) *cobra.Command {
	var f opsFlags
	var out string
	c := &cobra.Command{
		Use:   "export [--config FILE [--offline] | --ops URL] [-o|--out FILE]",
		Short: "Write the audit log as JSON lines, ending with a checkpoint signed now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if config.IsEdgeFile(f.cfgPath) {
				return writeOutput(stdout, out, func(w io.Writer) error { return edgeAudit(ctx, f, true, w, stdout, stderr) })
			}
			t, err := f.target(stderr)
			if err != nil {
				return err
			}
			viaGateway, err := t.useGateway(ctx)
			if err != nil {
				return err
			}
			if viaGateway {
				// The gateway signs the closing checkpoints with its own key.
				resp, err := t.call(ctx, http.MethodGet, "/audit/export", nil)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				return writeOutput(stdout, out, func(w io.Writer) error {
					if _, err := io.Copy(w, resp.Body); err != nil {
						return fmt.Errorf("audit: export: %w", err)
					}
					return nil
				})
			}
			key, err := envelope.LoadPrivateJWK(filepath.Join(t.cfg.GatewayKeys, "sign.jwk"))
			if err != nil {
				return err
			}
			b, err := t.openAuditLog(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			return writeOutput(stdout, out, func(w io.Writer) error { return audit.Export(ctx, b, w, key) })
		},
	}
	f.add(c, "gateway configuration (its operator listener, store and key folder)")
	c.Flags().StringVarP(&out, "out", "o", "", "output file (default: standard output); --output is the same flag")
	// --output as in send: both commands take -o, --out and --output.
	c.Flags().StringVar(&out, "output", "", "the same as --out")
	_ = c.Flags().MarkHidden("output")
	return c
}

func newAuditSubject(stdout, stderr io.Writer) *cobra.Command {
	var f opsFlags
	var ref string
	var asJSON bool
	c := &cobra.Command{
		Use:   "subject --ref REF [--config FILE [--offline] | --ops URL]",
		Short: "List who received which data categories about one subject, when, why and under which decision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			t, err := f.target(stderr)
			if err != nil {
				return err
			}
			var entries []audit.Entry
			viaGateway, err := t.useGateway(ctx)
			if err != nil {
				return err
			}
			if viaGateway {
				body, _ := json.Marshal(map[string]string{"ref": ref})
				resp, err := t.call(ctx, http.MethodPost, "/audit/subject", bytes.NewReader(body))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var rep struct {
					Entries []audit.Entry `json:"entries"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
					return fmt.Errorf("audit: subject: %w", err)
				}
				entries = rep.Entries
			} else {
				key, err := audit.LoadKey(filepath.Join(t.cfg.GatewayKeys, "audit.key"))
				if err != nil {
					return err
				}
				b, err := t.openAuditLog(ctx)
				if err != nil {
					return err
				}
				defer b.Close()
				if entries, err = audit.Subject(ctx, b, audit.SubjectHash(key, ref)); err != nil {
					return err
				}
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
	f.add(c, "gateway configuration (its operator listener, store and key folder)")
	c.Flags().StringVar(&ref, "ref", "", "the subject reference (subject.ref); it is hashed, never stored")
	c.Flags().BoolVar(&asJSON, "json", false, "print the entries as JSON lines")
	_ = c.MarkFlagRequired("ref")
	return c
}

// writeOutput writes through write to standard output, or (out set and not
// "-") to the file out: into a temporary file beside it, renamed once all
// is written, so that a failure leaves no file, or the earlier one as it was.
func writeOutput(stdout io.Writer, out string, write func(io.Writer) error) error {
	if out == "" || out == "-" {
		return write(stdout)
	}
	fh, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.partial")
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer os.Remove(fh.Name()) // after the rename, nothing is there
	if err := write(fh); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := os.Rename(fh.Name(), out); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
