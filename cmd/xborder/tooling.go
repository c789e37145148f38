package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/policies"
)

// newVersion is `xborder version`: the binary's module version, VCS
// commit, Go version and the version of the policies it embeds.
func newVersion(stdout io.Writer) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and embedded policy version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := api.ReadBuild()
			pv, err := policy.Digest(policies.FS())
			if err != nil {
				return err
			}
			rev := b.Revision
			if rev == "" {
				rev = "unknown"
			}
			if asJSON {
				// commit is always there, as in the text form ("unknown"
				// for a build without VCS information).
				out, _ := json.MarshalIndent(struct {
					api.Build
					Commit        string `json:"commit"`
					PolicyVersion string `json:"policy_version"`
				}{b, rev, pv}, "", "  ")
				fmt.Fprintln(stdout, string(out))
				return nil
			}
			if b.Modified {
				rev += " (modified)"
			}
			fmt.Fprintf(stdout, "xborder %s\ncommit %s", b.Version, rev)
			if b.Time != "" {
				fmt.Fprintf(stdout, " of %s", b.Time)
			}
			fmt.Fprintf(stdout, "\n%s\nembedded policy %s\n", b.GoVersion, pv)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

// newHealth is `xborder health`: the gateway's readiness, for container
// health checks (the image has no curl). Exit 0 ready, 1 not ready or no
// answer (Docker reserves 2; it stays the code of a usage error).
func newHealth(stdout io.Writer) *cobra.Command {
	var cfgPath, ops string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "health [--ops URL | --config FILE]",
		Short: "Ask a gateway's operator listener whether it is ready (GET /readyz); exit 0 ready, 1 not ready or not answering",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ops == "" {
				addr, err := opsListenOf(cfgPath)
				if err != nil {
					return err
				}
				ops = "http://" + dialable(addr)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(ops, "/")+"/readyz", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "xborder: no gateway answers at %s: %v\n", ops, err)
				return exitError{1}
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			printJSON(stdout, body)
			if resp.StatusCode != http.StatusOK {
				return exitError{1}
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "gateway configuration (for its ops_listen)")
	c.Flags().StringVar(&ops, "ops", "", "operator listener base URL (default: http:// + the config's ops_listen)")
	c.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return c
}

// Shell completion of flag values from the registry and the policy data.

// completeParticipants completes participant ids from the registry of
// --config, or of --pki, or of the development PKI (certs/dev).
func completeParticipants(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	path := filepath.Join("certs", "dev", pki.RegistryFile)
	if p, _ := cmd.Flags().GetString("pki"); p != "" {
		path = filepath.Join(p, pki.RegistryFile)
	}
	if cfgPath, _ := cmd.Flags().GetString("config"); cfgPath != "" {
		if cfg, err := config.Load(cfgPath); err == nil {
			path = cfg.Registry
		}
	}
	var ids []string
	if raw, err := os.ReadFile(path); err == nil {
		var f trust.File
		if yaml.Unmarshal(raw, &f) == nil {
			for _, p := range f.Participants {
				ids = append(ids, p.ID+"\t"+p.Name)
			}
		}
	}
	if len(ids) == 0 {
		for _, s := range pki.DemoFederation() {
			ids = append(ids, s.ID+"\t"+s.Name)
		}
	}
	return withPrefix(ids, prefix), cobra.ShellCompDirectiveNoFileComp
}

// purposeTypes reads purposes and their message types from the policy
// data (--policies, the config's policies folder, or the embedded ones).
func purposeTypes(cmd *cobra.Command) map[string][]string {
	var fsys fs.FS = policies.FS()
	if cfgPath, _ := cmd.Flags().GetString("config"); cfgPath != "" {
		if cfg, err := config.Load(cfgPath); err == nil {
			fsys = os.DirFS(cfg.Policies)
		}
	}
	raw, err := fs.ReadFile(fsys, policy.DataFile)
	if err != nil {
		return nil
	}
	var data struct {
		X struct {
			Purposes map[string]struct {
				Types []string `json:"types"`
			} `json:"purposes"`
		} `json:"xborder_data"`
	}
	if json.Unmarshal(raw, &data) != nil {
		return nil
	}
	out := map[string][]string{}
	for p, v := range data.X.Purposes {
		out[p] = v.Types
	}
	return out
}

func completePurposes(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	var out []string
	for p := range purposeTypes(cmd) {
		out = append(out, p)
	}
	return withPrefix(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

// completeTypes completes message types: those of --purpose if given.
func completeTypes(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	pt := purposeTypes(cmd)
	purpose, _ := cmd.Flags().GetString("purpose")
	var out []string
	for p, types := range pt {
		if purpose == "" || p == purpose {
			out = append(out, types...)
		}
	}
	return withPrefix(out, prefix), cobra.ShellCompDirectiveNoFileComp
}

// withPrefix keeps the candidates (value, or value\tdescription) starting
// with prefix, sorted and without repeats.
func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		v, _, _ := strings.Cut(c, "\t")
		if strings.HasPrefix(v, prefix) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// requiredFlagsFirst reports missing required flags before checking the
// arguments (cobra checks the arguments first).
func requiredFlagsFirst(args cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return err
		}
		return args(cmd, a)
	}
}
