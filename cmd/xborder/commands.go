package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/policies"
)

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// run executes the CLI and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintln(stderr, "xborder:", err)
		return 2
	}
	return 0
}

// newRoot wires every subcommand in one place.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "xborder",
		Short:         "Secure cross-border data-exchange gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)

	pkiCmd := &cobra.Command{Use: "pki", Short: "Development PKI"}
	pkiCmd.AddCommand(newPKIInit(stdout), newPKIRotate(stdout), newPKIRetire(stdout))

	policyCmd := &cobra.Command{Use: "policy", Short: "Evaluate and test the policy offline"}
	policyCmd.AddCommand(newPolicyEval(stdout), newPolicyTest(stdout), newPolicyImpact(stdout))

	root.AddCommand(newServe(stderr), pkiCmd, newSend(stdout), newInbox(stdout, stderr), policyCmd, newReceive(stdout), newAudit(stdout, stderr),
		newBench(stdout), newDeadLetters(stdout, stderr), newVersion(stdout), newHealth(stdout), newStore(stdout))
	root.AddCommand(newEdge(stdout, stderr))
	return root
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func newServe(stderr io.Writer) *cobra.Command {
	var cfgPath string
	var serveDamaged bool
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (with no --config: the development setup on the demo federation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				// The files and ports too: every problem in one go.
				return errors.Join(err, gateway.Preflight(cfg))
			}
			cfg.ServeDamagedStore = cfg.ServeDamagedStore || serveDamaged
			log := newLogger(stderr, cfg.LogLevel)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g, err := gateway.New(ctx, cfg, log)
			if err != nil && ctx.Err() != nil {
				// Interrupted while starting (the policy's tests and
				// scenarios are cut short): not a broken policy.
				fmt.Fprintln(stderr, "xborder: serve: interrupted while starting; nothing was served")
				return exitError{130}
			}
			if err != nil {
				return err
			}
			tuneMemory()
			return g.Serve(ctx)
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "configuration file (YAML)")
	c.Flags().BoolVar(&serveDamaged, "serve-damaged", false, "start on a store the start-up check finds damaged, serving what can still be read (serve_damaged_store)")
	return c
}

func newPKIInit(stdout io.Writer) *cobra.Command {
	var dir, participants string
	var push, hosts []string
	var force bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Make a development CA, gateway and participant material, and a registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs := pki.DemoFederation()
			if participants != "" {
				var err error
				if specs, err = pki.SpecsFor(strings.Split(participants, ",")); err != nil {
					return err
				}
			}
			for _, p := range push {
				id, u, ok := strings.Cut(p, "=")
				found := false
				for i := range specs {
					if specs[i].ID == id {
						specs[i].Delivery = trust.Delivery{Adapter: trust.AdapterHTTPS, URL: u, AllowPrivate: true}
						found = true
					}
				}
				if !ok || !found {
					return fmt.Errorf("--push %q: want ID=https://host:port/path for a participant being made", p)
				}
			}
			if !force {
				if done, err := pkiExists(cmd.ErrOrStderr(), dir, participants, specs, len(push) > 0 || len(hosts) > 0); done || err != nil {
					return err
				}
			}
			if err := pki.Init(pki.Options{Dir: dir, Participants: specs, Force: force, GatewayHosts: hosts}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "development PKI for %d participants in %s\n", len(specs), dir)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "certs/dev", "output folder")
	c.Flags().StringVar(&participants, "participants", "", "comma-separated participant ids (default: the demo federation)")
	c.Flags().StringArrayVar(&push, "push", nil, "ID=URL: deliver to ID by HTTPS push at URL (private addresses allowed; repeatable)")
	c.Flags().StringSliceVar(&hosts, "gateway-hosts", nil, "names and addresses of the gateway certificate (default localhost,127.0.0.1,::1)")
	c.Flags().BoolVar(&force, "force", false, "replace a PKI already in --dir: a new CA and new keys for everyone (what the old CA issued stops working)")
	return c
}

// pkiExists tells, when dir already holds a PKI (its registry.yaml), that
// it was left alone, what --force would do, and whether the participants
// asked for are in it: if some are not, the answer is no (exit 1), since
// what was asked was not made. It reports whether dir held one.
func pkiExists(stderr io.Writer, dir, participants string, specs []pki.Spec, otherFlags bool) (bool, error) {
	raw, err := os.ReadFile(filepath.Join(dir, pki.RegistryFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("pki init: %w", err)
	}
	have := map[string]bool{}
	var f trust.File
	if yaml.Unmarshal(raw, &f) == nil {
		for _, p := range f.Participants {
			have[p.ID] = true
		}
	}
	fmt.Fprintf(stderr, "pki init: %s already holds a development PKI (%s, %d participants): left it as it is, nothing made or changed.\n",
		dir, pki.RegistryFile, len(have))
	var missing []string
	if participants != "" {
		for _, s := range specs {
			if !have[s.ID] {
				missing = append(missing, s.ID)
			}
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "pki init: not made: %s (not in that PKI).\n", strings.Join(missing, ", "))
	}
	if otherFlags {
		fmt.Fprintln(stderr, "pki init: --push and --gateway-hosts were not applied either.")
	}
	fmt.Fprintln(stderr, "pki init: --force makes a new PKI in its place: a new CA and new keys for every participant asked for; whatever the old CA issued stops working.")
	if len(missing) > 0 {
		return true, exitError{1}
	}
	return true, nil
}

func newPKIRotate(stdout io.Writer) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "rotate --dir GATEWAY_KEYS",
		Short: "Make new gateway signing and encryption keys, keeping the old ones for the overlap",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sign, enc, err := pki.RotateGateway(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "rotated: previous signing key %s stays published; previous encryption key %s is still opened until `xborder pki retire --kid %s`; restart the gateway to use the new keys\n", sign, enc, enc)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "certs/dev/gateway", "the gateway's key folder")
	return c
}

func newPKIRetire(stdout io.Writer) *cobra.Command {
	var dir, kid string
	c := &cobra.Command{
		Use:   "retire --dir GATEWAY_KEYS --kid KID",
		Short: "End the overlap of an earlier gateway encryption key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pki.RetireEncryption(dir, kid); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "encryption key %s retired; restart the gateway\n", kid)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "certs/dev/gateway", "the gateway's key folder")
	c.Flags().StringVar(&kid, "kid", "", "kid of the earlier encryption key")
	_ = c.MarkFlagRequired("kid")
	return c
}

// clientFlags are shared by send and inbox.
type clientFlags struct {
	as, cfgPath, pkiDir, gatewayURL string
	retries                         int
	base                            string // the gateway's base URL, once client() ran
}

func (f *clientFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.as, "as", "", "participant id to act as (its development keys are used)")
	c.Flags().StringVar(&f.cfgPath, "config", "", "gateway configuration (for its address)")
	c.Flags().StringVar(&f.pkiDir, "pki", "", "development PKI folder (default: the config's dev_pki, certs/dev)")
	c.Flags().StringVar(&f.gatewayURL, "gateway", "", "gateway base URL (default: https:// + the config's listen)")
	c.Flags().IntVar(&f.retries, "retries", 3, "how often a failed connection or a 503 is retried, with backoff (send: with the same signed bytes)")
	_ = c.MarkFlagRequired("as")
	_ = c.RegisterFlagCompletionFunc("as", completeParticipants)
}

// retry is the retry policy of every request the command makes; each
// retry is said on stderr.
func (f *clientFlags) retry(stderr io.Writer, what string) client.Retry {
	return client.Retry{Attempts: f.retries + 1, OnRetry: func(attempt int, r *client.Response, err error, wait time.Duration) {
		why := fmt.Sprint(err)
		if errors.Is(err, syscall.ECONNREFUSED) {
			why = "connection refused"
		}
		if r != nil {
			why = fmt.Sprintf("HTTP %d %s", r.Status, r.Problem().Detail)
		}
		fmt.Fprintf(stderr, "xborder: the gateway at %s: %s; trying again in %v%s (retry %d of %d)\n",
			f.base, why, wait.Round(time.Millisecond), what, attempt, f.retries)
	}}
}

// unreachable explains a request that failed after its retries: a gateway
// that is not there is named, with how to start it.
func (f *clientFlags) unreachable(err error) error {
	if err == nil || !client.NotSent(err) {
		return err
	}
	why := "cannot connect"
	if errors.Is(err, syscall.ECONNREFUSED) {
		why = "connection refused"
	}
	return fmt.Errorf("no gateway answers at %s (%s; tried %d times): start it with `go run ./cmd/xborder serve` "+
		"(or `xborder serve --config FILE`), or give the running one's address with --gateway URL or its --config", f.base, why, f.retries+1)
}

func (f *clientFlags) client(stderr io.Writer) (*client.Client, error) {
	if f.retries < 0 {
		return nil, fmt.Errorf("--retries %d: want 0 or more", f.retries)
	}
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		return nil, err
	}
	dir := f.pkiDir
	if dir == "" {
		dir = cfg.DevPKI
	}
	if dir == "" {
		dir = "certs/dev"
	}
	me, err := client.LoadIdentity(dir, f.as)
	if err != nil {
		return nil, err
	}
	base := f.gatewayURL
	if base == "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		base = "https://" + net.JoinHostPort(host, port)
	}
	f.base = base
	cl := client.New(base, me)
	r := f.retry(stderr, "")
	cl.Retry = &r
	return cl, nil
}

func newSend(stdout io.Writer) *cobra.Command {
	var f clientFlags
	var to, typ, purpose, inReplyTo, legalBasis, output string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "send --as ID --to ID --type T --purpose P FILE",
		Short: "Sign FILE's subject/record/consent as ID, send it, print the answer",
		Args: requiredFlagsFirst(func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return errors.New("send: FILE is missing: the JSON file with the message's subject, record and consent (e.g. cmd/xborder/examples/verify-request.json)")
			case len(args) > 1:
				return fmt.Errorf("send: one FILE, not %d (%s)", len(args), strings.Join(args, " "))
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			v, err := envelope.DecodeStrict(raw, 32)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			body, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: not a JSON object", args[0])
			}
			now := time.Now()
			msg := map[string]any{
				"id": uuid.NewString(), "type": typ, "from": f.as, "to": to, "purpose": purpose,
				"legal_basis": legalBasis, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
			}
			for _, k := range []string{"subject", "record", "consent", "in_reply_to", "legal_basis"} {
				if val, ok := body[k]; ok {
					msg[k] = val
				}
			}
			for k := range body {
				switch k {
				case "subject", "record", "consent", "in_reply_to", "legal_basis":
				default:
					return fmt.Errorf("%s: unexpected field %q (only subject, record, consent, in_reply_to, legal_basis)", args[0], k)
				}
			}
			if inReplyTo != "" {
				msg["in_reply_to"] = inReplyTo
			}
			cl, err := f.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			// Signed and sealed once: a retry sends the same bytes, never
			// the message again under a new id (PROTOCOL §3.2).
			sealed, err := cl.Seal(ctx, msg)
			if err != nil {
				return f.unreachable(err)
			}
			resp, err := cl.PostRetry(ctx, sealed, f.retry(cmd.ErrOrStderr(), " with the same signed message"))
			if err != nil {
				return f.unreachable(err)
			}
			if resp.Status != 200 && resp.Status != 202 {
				printJSON(stdout, resp.Body)
				return exitError{1}
			}
			var ans struct {
				ID      string `json:"id"`
				Receipt string `json:"receipt"`
			}
			if err := json.Unmarshal(resp.Body, &ans); err != nil {
				return fmt.Errorf("answer: %w", err)
			}
			if _, err := cl.VerifyReceipt(ctx, ans.Receipt); err != nil {
				return fmt.Errorf("the gateway's receipt does not verify: %w", err)
			}
			if output == "id" {
				fmt.Fprintln(stdout, ans.ID)
				return nil
			}
			printJSON(stdout, resp.Body)
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&to, "to", "", "recipient participant id")
	c.Flags().StringVar(&typ, "type", "", "message type")
	c.Flags().StringVar(&purpose, "purpose", "", "purpose (DOMAIN.md §2)")
	c.Flags().StringVar(&inReplyTo, "in-reply-to", "", "id of the request a response answers")
	c.Flags().StringVar(&legalBasis, "legal-basis", "data-sharing agreement on file", "legal basis relied on")
	c.Flags().DurationVar(&ttl, "ttl", 5*time.Minute, "validity of the message (exp - iat, at most 1h)")
	c.Flags().StringVarP(&output, "output", "o", "json", "json (the whole answer) or id (the message id only); --out is the same flag")
	// --out as in audit export: both commands take -o, --out and --output.
	c.Flags().StringVar(&output, "out", "json", "the same as --output")
	_ = c.Flags().MarkHidden("out")
	for _, n := range []string{"to", "type", "purpose"} {
		_ = c.MarkFlagRequired(n)
	}
	_ = c.RegisterFlagCompletionFunc("to", completeParticipants)
	_ = c.RegisterFlagCompletionFunc("purpose", completePurposes)
	_ = c.RegisterFlagCompletionFunc("type", completeTypes)
	return c
}

func printJSON(w io.Writer, b []byte) {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		w.Write(b)
		fmt.Fprintln(w)
		return
	}
	out.WriteByte('\n')
	w.Write(out.Bytes())
}

func newInbox(stdout, stderr io.Writer) *cobra.Command {
	var f clientFlags
	var ack bool
	var max int
	c := &cobra.Command{
		Use:   "inbox --as ID [--ack]",
		Short: "Fetch, decrypt and verify ID's deliveries; print them as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := f.client(stderr)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			ds, err := cl.Inbox(ctx, max)
			if err != nil {
				return f.unreachable(err)
			}
			if len(ds) == 0 {
				// On stderr: stdout stays JSON lines, here none.
				fmt.Fprintf(stderr, "inbox: no deliveries for %s\n", f.as)
				return nil
			}
			enc := json.NewEncoder(stdout)
			for _, d := range ds {
				if err := enc.Encode(map[string]any{
					"delivery_id": d.DeliveryID, "message_id": d.MessageID,
					"message": d.Payload.Message, "provenance": d.Payload.Provenance,
				}); err != nil {
					return err
				}
				if ack {
					if err := cl.Ack(ctx, d.DeliveryID); err != nil {
						return f.unreachable(err)
					}
				}
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().BoolVar(&ack, "ack", false, "acknowledge each delivery once printed")
	c.Flags().IntVar(&max, "max", 10, "at most this many deliveries (1-100)")
	return c
}

// policyFS is --policies DIR, else ./policies when it exists (the copy a
// compliance officer edits), else the copy embedded in this binary. Which
// one is said on stderr. A --policies that is not a folder is named.
func policyFS(cmd *cobra.Command, dir string) (fsys, error) {
	src := fsys{os.DirFS(dir), dir}
	switch {
	case dir != "":
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return src, fmt.Errorf("--policies %s: %s", dir, notAFolder(err))
		}
	case isDir(policies.DirName):
		src = fsys{os.DirFS(policies.DirName), "./" + policies.DirName}
	default:
		src = fsys{policies.FS(), "the copy embedded in this binary (no ./" + policies.DirName + " here)"}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "policies: %s\n", src.name)
	return src, nil
}

// notAFolder says why a path given as a folder is not one.
func notAFolder(err error) string {
	switch {
	case err == nil:
		return "not a folder"
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or folder"
	}
	return err.Error()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func newPolicyEval(stdout io.Writer) *cobra.Command {
	var input, dir string
	c := &cobra.Command{
		Use:   "eval --input FILE [--policies DIR]",
		Short: "Print the decision (DOMAIN.md §7) for one input, offline",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := os.ReadFile(input)
			if err != nil {
				return err
			}
			// A scenario file ({"input": …, "expect": …}) is accepted as well.
			in, err := policy.ParseInput(raw)
			if err != nil {
				return fmt.Errorf("%s: not a decision input (DOMAIN.md §7) or a scenario file", input)
			}
			src, err := policyFS(cmd, dir)
			if err != nil {
				return err
			}
			b, err := policy.Compile(cmd.Context(), src.fs, policy.Options{Timeout: offlinePolicyTimeout})
			if err != nil {
				return err
			}
			dec, derr := b.Decide(cmd.Context(), in)
			out, _ := json.MarshalIndent(map[string]any{"decision": dec, "policy_version": b.Version}, "", "  ")
			fmt.Fprintln(stdout, string(out))
			if derr != nil {
				return fmt.Errorf("evaluation failed (denied): %w", derr)
			}
			return nil
		},
	}
	c.Flags().StringVar(&input, "input", "", "decision input JSON (or a scenario file)")
	c.Flags().StringVar(&dir, "policies", "", "policies folder (default: ./policies if it exists, else the copy embedded in the binary)")
	_ = c.MarkFlagRequired("input")
	return c
}

func newPolicyTest(stdout io.Writer) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "test [--policies DIR]",
		Short: "Run the Rego tests and the scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := policyFS(cmd, dir)
			if err != nil {
				return err
			}
			b, err := policy.Compile(cmd.Context(), src.fs, policy.Options{Timeout: offlinePolicyTimeout})
			if err != nil {
				return err
			}
			rep, err := b.Test(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "policies: %s (%s)\n", src.name, b.Version)
			for _, sc := range rep.Scenarios {
				mark := "ok  "
				if !sc.Pass {
					mark = "FAIL"
				}
				fmt.Fprintf(stdout, "%s scenario %s: %s\n", mark, sc.File, sc.Name)
				for _, p := range sc.Problems {
					fmt.Fprintf(stdout, "       %s\n", p)
				}
			}
			for _, f := range rep.Failures {
				fmt.Fprintf(stdout, "FAIL %s\n", f)
			}
			fmt.Fprintf(stdout, "rego tests: %d passed, %d failed; scenarios: %d passed, %d failed\n",
				rep.RegoPassed, rep.RegoFailed, rep.ScenariosPassed, rep.ScenariosFailed)
			if !rep.OK() {
				return exitError{1}
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "policies", "", "policies folder (default: ./policies if it exists, else the copy embedded in the binary)")
	return c
}

// offlinePolicyTimeout bounds one decision of `policy eval` and `policy
// test`. They serve nobody, so a busy machine must not turn a slow decision
// into a failure; the gateway's own deadline is policy_timeout.
const offlinePolicyTimeout = 30 * time.Second

type fsys struct {
	fs   fs.FS
	name string
}

// tuneMemory runs once the gateway is built. Its start-up (compiling the
// policy, running its tests and scenarios) leaves garbage that is returned
// to the system now rather than carried as the heap's baseline. Unless
// GOGC is set, the collector runs at 200 % instead of 100 %: less CPU a
// message for a little more heap (figures: README "Performance").
func tuneMemory() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	debug.FreeOSMemory()
}
