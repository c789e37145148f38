package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/cmd/xborder/internal/bench"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/policies"
)

// newBench is `xborder bench`: the load tool (gateway/bench).
func newBench(stdout io.Writer) *cobra.Command {
	var (
		drain                                            bool
		cfgPath, pkiDir, reportPath, store, opaBin, self string
		rate, messages, conns, pid, decisions, rounds    int
		flat                                             bool
		duration                                         time.Duration
	)
	c := &cobra.Command{
		Use:   "bench",
		Short: "Drive a gateway with pre-sealed demo messages and measure it against the crypto floor",
		Long: `Pre-seals distinct envelopes for a mix of the demo flows (allowed and denied),
sends them over mTLS keep-alive connections at --rate messages a second or
flat out (--max) for --duration, and reports throughput, latency, errors by
code, the gateway's CPU per accepted message and RSS (from /proc), and the
crypto floor measured in the same run. Loads go to 127.0.0.1 only.

With no --config it starts ` + "`xborder serve`" + ` itself on the development setup in a
temporary folder (embedded store unless --store), and measures that process.
With --config it drives the gateway that config describes; the participants'
material comes from --pki (default: the config's dev_pki, else certs/dev) and
the gateway's process from --pid, or else from the process holding its
listening socket.

--opa PATH also compares one policy decision by the embedded engine with the
same decision asked of ` + "`opa run --server`" + ` over HTTP (the sidecar pattern).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if flat == (rate > 0) {
				return errors.New("bench: give exactly one of --rate N or --max")
			}
			if duration <= 0 || duration > 30*time.Minute {
				return errors.New("bench: --duration must be within (0, 30m]")
			}
			ctx := cmd.Context()
			logf := func(format string, args ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench: "+format+"\n", args...)
			}
			o := bench.Options{Rate: rate, Duration: duration, Messages: messages, Conns: conns, PID: pid, Log: logf, Drain: drain}
			if cfgPath == "" {
				if self == "" {
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					self = exe
				}
				gw, err := startGateway(ctx, self, store, logf)
				if err != nil {
					return err
				}
				defer gw.stop()
				o.Base, o.PKI, o.GatewayKeys, o.PID = gw.base, gw.pki, gw.keys, gw.cmd.Process.Pid
				o.Metrics = gw.metrics
				o.Policies = policies.FS() // what startGateway serves
			} else {
				cfg, err := config.Load(cfgPath)
				if err != nil {
					return err
				}
				host, port, err := net.SplitHostPort(cfg.Listen)
				if err != nil {
					return fmt.Errorf("bench: listen %q: %w", cfg.Listen, err)
				}
				if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
					return fmt.Errorf("bench: loads go to the loopback only, not %s", cfg.Listen)
				}
				o.Base, o.GatewayKeys = "https://"+cfg.Listen, cfg.GatewayKeys
				o.Policies = os.DirFS(cfg.Policies)
				o.PKI = pkiDir
				if o.PKI == "" {
					o.PKI = cfg.DevPKI
				}
				if o.PKI == "" {
					o.PKI = "certs/dev"
				}
				if o.PID == 0 {
					p, _ := strconv.Atoi(port)
					if o.PID, err = bench.PIDByPort(p); err != nil {
						return err
					}
				}
			}
			rep, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			if opaBin != "" {
				if rep.Policy, err = bench.ComparePolicy(ctx, policies.FS(), opaBin, decisions, rounds, logf); err != nil {
					return err
				}
			}
			rep.Table(stdout)
			if reportPath != "" {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(reportPath, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfgPath, "config", "", "configuration of a running gateway to drive (default: start one on the development setup)")
	f.StringVar(&pkiDir, "pki", "", "participants' material, with --config (default: the config's dev_pki, else certs/dev)")
	f.IntVar(&pid, "pid", 0, "the gateway's process id, with --config (default: found by its listening port)")
	f.IntVar(&rate, "rate", 0, "messages per second")
	f.BoolVar(&flat, "max", false, "send flat out")
	f.DurationVar(&duration, "duration", 10*time.Second, "how long to send (at most 30m)")
	f.IntVar(&messages, "messages", 0, "envelopes to pre-seal (default: enough for the rate and duration; 20000 with --max)")
	f.IntVar(&conns, "conns", 0, "concurrent requests (default: 64 at a rate, 8 with --max)")
	f.BoolVar(&drain, "drain", false, "recipients pull and acknowledge their inboxes during the run (steady state)")
	f.StringVar(&reportPath, "report", "", "write the JSON report to this file")
	f.StringVar(&store, "store", "", "store of the gateway bench starts (e.g. redis://127.0.0.1:6379/0; default: embedded)")
	// No backquotes in a usage: pflag would take the quoted words for the
	// value's name (--opa opa run --server).
	f.StringVar(&opaBin, "opa", "", "opa binary (PATH): also compare the embedded policy with 'opa run --server' over HTTP")
	f.IntVar(&decisions, "policy-decisions", 2000, "decisions per side and round, with --opa")
	f.IntVar(&rounds, "policy-rounds", 3, "rounds of the policy comparison (the median is reported)")
	f.StringVar(&self, "xborder", "", "xborder binary that serves (default: this one)")
	_ = f.MarkHidden("xborder")
	return c
}

// benchGateway is a gateway process bench started on the development setup.
type benchGateway struct {
	cmd             *exec.Cmd
	dir             string
	base, pki, keys string
	metrics         string // the operator listener's /metrics
	log             *os.File
}

// startGateway runs `xborder serve` in a temporary folder with the embedded
// policies, on free loopback ports, and waits until it is ready.
func startGateway(ctx context.Context, exe, store string, logf func(string, ...any)) (*benchGateway, error) {
	dir, err := os.MkdirTemp("", "xborder-bench-")
	if err != nil {
		return nil, err
	}
	g := &benchGateway{dir: dir}
	fail := func(err error) (*benchGateway, error) {
		g.stop()
		return nil, err
	}
	if err := os.CopyFS(filepath.Join(dir, "policies"), policies.FS()); err != nil {
		return fail(fmt.Errorf("bench: policies: %w", err))
	}
	p1, err := bench.FreePort()
	if err != nil {
		return fail(err)
	}
	p2, err := bench.FreePort()
	if err != nil {
		return fail(err)
	}
	if g.log, err = os.Create(filepath.Join(dir, "gateway.log")); err != nil {
		return fail(err)
	}
	g.cmd = exec.Command(exe, "serve")
	g.cmd.Dir = dir
	g.cmd.Env = append(os.Environ(),
		fmt.Sprintf("XBORDER_LISTEN=127.0.0.1:%d", p1),
		fmt.Sprintf("XBORDER_OPS_LISTEN=127.0.0.1:%d", p2),
		"XBORDER_POLICY_WATCH=0s",
		"XBORDER_LOG_LEVEL=warn",
	)
	if store != "" {
		g.cmd.Env = append(g.cmd.Env, "XBORDER_STORE="+store)
	}
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	logf("starting the gateway in %s", dir)
	if err := g.cmd.Start(); err != nil {
		return fail(fmt.Errorf("bench: start gateway: %w", err))
	}
	if err := bench.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", p2), 90*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
		return fail(fmt.Errorf("%w\n%s", err, b))
	}
	g.base = fmt.Sprintf("https://127.0.0.1:%d", p1)
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", p2)
	g.pki = filepath.Join(dir, "certs", "dev")
	g.keys = filepath.Join(g.pki, "gateway")
	return g, nil
}

// stop ends the gateway (SIGTERM, then SIGKILL after 10 s) and removes its
// folder.
func (g *benchGateway) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = g.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-done
		}
	}
	if g.log != nil {
		g.log.Close()
	}
	os.RemoveAll(g.dir)
}
