package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// newPolicyImpact compares a candidate policy folder with the policy in
// force (--policies, else ./policies, else the embedded copy) on every
// scenario and on generated inputs; the console's impact page offline.
func newPolicyImpact(stdout io.Writer) *cobra.Command {
	var candidate, dir, format string
	var variants int
	var seed int64
	c := &cobra.Command{
		Use:   "impact --candidate DIR [--variants N] [--policies DIR]",
		Short: "What a candidate policy would change: its tests, every scenario and N generated inputs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			src := policyFS(cmd, dir)
			opts := policy.Options{Timeout: offlinePolicyTimeout}
			live, err := policy.Compile(ctx, src.fs, opts)
			if err != nil {
				return fmt.Errorf("policy in force: %w", err)
			}
			// The candidate is compiled, tested and decided in a worker
			// process of its own, bounded as the gateway's are.
			w, err := worker.Start(ctx, worker.Options{Limits: worker.Limits{Decision: offlinePolicyTimeout}})
			if err != nil {
				return fmt.Errorf("candidate: %w", err)
			}
			defer w.Close()
			cand, err := w.Load(ctx, os.DirFS(candidate))
			if err != nil {
				return fmt.Errorf("candidate: %w", err)
			}
			tests, err := cand.Test(ctx)
			if err != nil {
				return fmt.Errorf("candidate: %w", err)
			}
			scenRep, scen, err := impact.CompareScenarios(ctx, live, cand)
			if err != nil {
				return err
			}
			gen, err := impact.Synth(seed, live, impact.DemoParties(), time.Now())
			if err != nil {
				return err
			}
			synth, err := impact.Compare(ctx, live, cand, gen, variants, 0)
			if err != nil {
				return err
			}
			if format == "json" {
				out, _ := json.MarshalIndent(map[string]any{"policy_version": live.Version, "candidate_version": cand.Version,
					"tests": tests, "scenarios": scen, "scenario_report": scenRep, "synthetic_report": synth, "seed": seed}, "", "  ")
				fmt.Fprintln(stdout, string(out))
				return nil
			}
			fmt.Fprintf(stdout, "in force:  %s (%s)\ncandidate: %s (%s)\n", src.name, live.Version, candidate, cand.Version)
			fmt.Fprintf(stdout, "candidate's own tests: rego %d passed, %d failed; scenarios %d passed, %d failed\n",
				tests.RegoPassed, tests.RegoFailed, tests.ScenariosPassed, tests.ScenariosFailed)
			for _, f := range tests.Failures {
				fmt.Fprintf(stdout, "  FAIL %s\n", f)
			}
			for _, s := range scen {
				if s.Changed {
					fmt.Fprintf(stdout, "  scenario %s: %s → %s\n", s.File, s.Before, s.After)
				}
			}
			for _, r := range []impact.Report{scenRep, synth} {
				fmt.Fprintf(stdout, "%s: %d of %d decisions change (%d allowed → denied, %d denied → allowed)\n",
					r.Source, r.Changed, r.Inputs, r.AllowedToDenied, r.DeniedToAllowed)
				for _, g := range r.ByPurpose {
					if g.Changed > 0 {
						fmt.Fprintf(stdout, "  purpose %-24s %5d changed (%d → denied, %d → allowed) of %d\n", g.Key, g.Changed, g.AllowedToDenied, g.DeniedToAllowed, g.Inputs)
					}
				}
				for _, g := range r.ByRoles {
					fmt.Fprintf(stdout, "  roles   %-48s %5d changed\n", g.Key, g.Changed)
				}
				for _, g := range r.ByRules {
					fmt.Fprintf(stdout, "  rules   %-48s %5d changed\n", g.Key, g.Changed)
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&candidate, "candidate", "", "the candidate policy folder")
	c.Flags().StringVar(&dir, "policies", "", "the policy in force (default: ./policies if it exists, else the copy embedded in the binary)")
	c.Flags().IntVar(&variants, "variants", 10000, "generated inputs to compare on")
	c.Flags().Int64Var(&seed, "seed", 1, "the generator's seed (the same seed gives the same inputs)")
	c.Flags().StringVar(&format, "format", "text", "text or json")
	_ = c.MarkFlagRequired("candidate")
	return c
}
