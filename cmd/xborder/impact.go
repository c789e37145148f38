package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// newPolicyImpact compares a candidate policy with the policy in force
// (--policies, else ./policies, else the embedded copy) on every scenario
// and on generated inputs; the console's impact page offline. A candidate
// a running gateway would refuse (it does not compile, or its own tests or
// scenarios fail) is a negative answer: exit 1, and why.
func newPolicyImpact(stdout io.Writer) *cobra.Command {
	var candidate, dir, format string
	var variants int
	var seed int64
	var progressAfter time.Duration
	c := &cobra.Command{
		Use:   "impact --candidate DIR|data.json|FILE.tar.gz [--variants N] [--policies DIR]",
		Short: "What a candidate policy would change: its tests, every scenario and N generated inputs (exit 1 if a gateway would refuse it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			src, err := policyFS(cmd, dir)
			if err != nil {
				return err
			}
			prog := newProgress(cmd.ErrOrStderr(), progressAfter)
			opts := policy.Options{Timeout: offlinePolicyTimeout}
			cfs, cname, err := loadCandidate(candidate, src)
			if err != nil {
				return err
			}
			if cname != candidate {
				fmt.Fprintf(cmd.ErrOrStderr(), "candidate: %s\n", cname)
			}
			prog.stage("compiling the policy in force")
			live, err := policy.Compile(ctx, src.fs, opts)
			if err != nil {
				return fmt.Errorf("policy in force (%s): %w", src.name, err)
			}
			// The candidate is compiled, tested and decided in a worker
			// process of its own, bounded as the gateway's are.
			prog.stage("compiling the candidate")
			w, err := worker.Start(ctx, worker.Options{Limits: worker.Limits{Decision: offlinePolicyTimeout}})
			if err != nil {
				return fmt.Errorf("candidate: %w", err)
			}
			defer w.Close()
			cand, err := w.Load(ctx, cfs)
			if err != nil {
				// The gateway would refuse it the same way (Engine.Reload).
				if format == "json" {
					printRefusal(stdout, map[string]any{"policy_version": live.Version, "refused": true,
						"refused_because": []string{err.Error()}})
				} else {
					fmt.Fprintf(stdout, "in force:  %s (%s)\ncandidate: %s\n", src.name, live.Version, cname)
					fmt.Fprintf(stdout, "REFUSED: a running gateway would refuse it: it does not compile: %v\n", err)
				}
				return exitError{1}
			}
			prog.stage("running the candidate's tests and scenarios")
			tests, err := cand.Test(ctx)
			if err != nil {
				return fmt.Errorf("candidate: %w", err)
			}
			prog.stage("comparing on the scenarios")
			scenRep, scen, err := impact.CompareScenarios(ctx, live, cand)
			if err != nil {
				return err
			}
			gen, err := impact.Synth(seed, live, impact.DemoParties(), time.Now())
			if err != nil {
				return err
			}
			prog.stage(fmt.Sprintf("comparing on %d generated inputs", variants))
			synth, err := impact.CompareProgress(ctx, live, cand, gen, variants, 0, prog.tell)
			prog.finish()
			if err != nil {
				return err
			}
			var why []string
			if !tests.OK() {
				why = append(why, tests.Err().Error())
			}
			if format == "json" {
				printRefusal(stdout, map[string]any{"policy_version": live.Version, "candidate_version": cand.Version,
					"tests": tests, "scenarios": scen, "scenario_report": scenRep, "synthetic_report": synth, "seed": seed,
					"refused": len(why) > 0, "refused_because": why})
				if len(why) > 0 {
					return exitError{1}
				}
				return nil
			}
			fmt.Fprintf(stdout, "in force:  %s (%s)\ncandidate: %s (%s)\n", src.name, live.Version, cname, cand.Version)
			fmt.Fprintf(stdout, "candidate's own tests: rego %d passed, %d failed; scenarios %d passed, %d failed\n",
				tests.RegoPassed, tests.RegoFailed, tests.ScenariosPassed, tests.ScenariosFailed)
			for _, f := range tests.Failures { // Rego tests and scenarios
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
			if len(why) > 0 {
				fmt.Fprintf(stdout, "REFUSED: a running gateway would refuse it: %s\n", strings.Join(why, "; "))
				return exitError{1}
			}
			fmt.Fprintln(stdout, "a running gateway would accept it as it is")
			return nil
		},
	}
	c.Flags().StringVar(&candidate, "candidate", "", "the candidate: a policy folder, a data.json (alone, or a folder holding only it: over the Rego in force), or a .tar.gz of the folder")
	c.Flags().StringVar(&dir, "policies", "", "the policy in force (default: ./policies if it exists, else the copy embedded in the binary)")
	c.Flags().IntVar(&variants, "variants", 10000, "generated inputs to compare on")
	c.Flags().Int64Var(&seed, "seed", 1, "the generator's seed (the same seed gives the same inputs)")
	c.Flags().StringVar(&format, "format", "text", "text or json")
	// Progress shows once a run has lasted this long (tests set 0).
	c.Flags().DurationVar(&progressAfter, "progress-after", time.Second, "show progress on stderr once the run has lasted this long")
	_ = c.Flags().MarkHidden("progress-after")
	_ = c.MarkFlagRequired("candidate")
	return c
}

func printRefusal(w io.Writer, v map[string]any) {
	out, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(out))
}

// loadCandidate reads --candidate as the console reads an upload: a policy
// folder; a data.json (a file, or a folder that holds no Rego), taken over
// the Rego of the policy in force; or a .tar.gz of the policy folder. It
// returns the candidate and how to name it.
func loadCandidate(path string, base fsys) (fs.FS, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("--candidate %s: %s", path, notAFolder(err))
	}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			return nil, "", fmt.Errorf("--candidate %s: neither a folder nor a file", path)
		}
		return candidateFile(path, base)
	}
	hasRego := false
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".rego") {
			hasRego = true
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("--candidate %s: %w", path, err)
	}
	if hasRego {
		return os.DirFS(path), path, nil
	}
	data := filepath.Join(path, policy.DataFile)
	if _, err := os.Stat(data); err != nil {
		return nil, "", fmt.Errorf("--candidate %s: holds neither Rego files nor a %s: give the candidate's policy folder, a %s, or a .tar.gz of the folder",
			path, policy.DataFile, policy.DataFile)
	}
	return candidateFile(data, base)
}

// candidateFile is a data.json or a .tar.gz, checked and bounded as an
// upload to the console is (impact.Candidate).
func candidateFile(path string, base fsys) (fs.FS, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("--candidate %s: %w", path, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, impact.MaxUpload+1))
	if err != nil {
		return nil, "", fmt.Errorf("--candidate %s: %w", path, err)
	}
	cfs, err := impact.Candidate(base.fs, raw)
	if err != nil {
		return nil, "", fmt.Errorf("--candidate %s: %w", path, err)
	}
	name := path
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		name = fmt.Sprintf("%s (its data.json over the Rego of %s)", path, base.name)
	}
	return cfs, name, nil
}

// progress shows a long run advancing on stderr, once it has lasted
// `after`: its stages, then the generated inputs compared, as a bar
// redrawn in place on a terminal and one line per 10 % otherwise (a log
// keeps every line).
type progress struct {
	w     io.Writer
	tty   bool
	after time.Duration
	start time.Time

	mu    sync.Mutex
	shown int // the last percentage shown (bar) or tenth (lines)
	bar   bool
}

func newProgress(w io.Writer, after time.Duration) *progress {
	p := &progress{w: w, after: after, start: time.Now(), shown: -1}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) due() bool { return time.Since(p.start) >= p.after }

func (p *progress) stage(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.due() {
		fmt.Fprintf(p.w, "impact: %s…\n", what)
	}
}

// tell is the impact.Progress hook.
func (p *progress) tell(done, n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.due() {
		return
	}
	if p.tty {
		pct := done * 100 / n
		if pct == p.shown {
			return
		}
		p.shown, p.bar = pct, true
		const width = 30
		fill := done * width / n
		fmt.Fprintf(p.w, "\rimpact: [%s%s] %3d %% (%d of %d)", strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct, done, n)
		return
	}
	tenth := done * 10 / n
	if tenth == 0 || tenth == p.shown {
		return
	}
	p.shown = tenth
	fmt.Fprintf(p.w, "impact: %d %% of %d generated inputs compared\n", tenth*10, n)
}

// finish ends a bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar {
		fmt.Fprintln(p.w)
		p.bar = false
	}
}
