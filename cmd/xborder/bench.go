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
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xborder/xborder/cmd/xborder/internal/bench"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/policies"
)

// newBench is `xborder bench`: the load tool (gateway/bench).
func newBench(stdout io.Writer) *cobra.Command {
	var (
		drain, edgeMode                                  bool
		tokenFile                                        string
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
same decision asked of ` + "`opa run --server`" + ` over HTTP (the sidecar pattern).

--edge drives an edge (` + "`xborder edge`" + `) instead: it posts plain JSON (the demo
verification request, UN-UNICEF to KZ-MJ) to the edge's local API, waits
until the hub has answered every queued message, and reports throughput,
the latency to 202 and to accepted, and the edge's CPU per accepted message
against its floor (sign + seal + verify the receipt, measured in-process).
With no --config it starts a gateway and an edge for UN-UNICEF itself; with
--config EDGE_CONFIG it drives the running edge that config describes
(--token-file: a local token, when the edge requires one).`,
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
			if edgeMode {
				return benchEdge(ctx, stdout, edgeBenchArgs{cfgPath: cfgPath, self: self, store: store, tokenFile: tokenFile,
					pid: pid, rate: rate, conns: conns, duration: duration, reportPath: reportPath}, logf)
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
	f.BoolVar(&edgeMode, "edge", false, "drive an edge's local API (with --config: the edge that config describes; default: start a gateway and an edge)")
	f.StringVar(&tokenFile, "token-file", "", "with --edge --config: file holding a local bearer token of the edge (its first)")
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

type edgeBenchArgs struct {
	cfgPath, self, store, tokenFile, reportPath string
	pid, rate, conns                            int
	duration                                    time.Duration
}

// benchEdge is `xborder bench --edge`.
func benchEdge(ctx context.Context, stdout io.Writer, a edgeBenchArgs, logf func(string, ...any)) error {
	o := bench.EdgeOptions{Rate: a.rate, Duration: a.duration, Conns: a.conns, PID: a.pid, Log: logf}
	if a.cfgPath == "" {
		if a.self == "" {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			a.self = exe
		}
		gw, err := startGateway(ctx, a.self, a.store, logf)
		if err != nil {
			return err
		}
		defer gw.stop()
		ed, err := startBenchEdge(ctx, a.self, gw, "UN-UNICEF", logf)
		if err != nil {
			return err
		}
		defer ed.stop()
		o.API, o.Metrics, o.PID, o.Participant = ed.api, ed.metrics, ed.cmd.Process.Pid, "UN-UNICEF"
		if o.Sign, err = envelope.LoadPrivateJWK(filepath.Join(gw.pki, "UN-UNICEF", "sign.jwk")); err != nil {
			return err
		}
		enc, err := envelope.LoadPrivateJWK(filepath.Join(gw.keys, "enc.jwk"))
		if err != nil {
			return err
		}
		o.HubEnc = enc.Public()
	} else {
		if !config.IsEdgeFile(a.cfgPath) {
			return fmt.Errorf("bench: --edge --config wants an edge's config; %s is a gateway's", a.cfgPath)
		}
		cfg, err := config.LoadEdge(a.cfgPath, "")
		if err != nil {
			return err
		}
		for _, l := range []string{cfg.Listen, cfg.OpsListen} {
			host, _, err := net.SplitHostPort(l)
			if err != nil {
				return fmt.Errorf("bench: %q: %w", l, err)
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("bench: loads go to the loopback only, not %s", l)
			}
		}
		o.API, o.Metrics, o.Participant = "http://"+cfg.Listen, "http://"+cfg.OpsListen+"/metrics", cfg.Participant
		if o.Sign, err = envelope.LoadPrivateJWK(filepath.Join(cfg.ParticipantKeys, "sign.jwk")); err != nil {
			return err
		}
		if a.tokenFile != "" {
			if o.Token, err = firstToken(a.tokenFile); err != nil {
				return err
			}
		}
		if o.PID == 0 {
			_, port, _ := net.SplitHostPort(cfg.Listen)
			p, _ := strconv.Atoi(port)
			if o.PID, err = bench.PIDByPort(p); err != nil {
				return err
			}
		}
	}
	rep, err := bench.RunEdge(ctx, o)
	if err != nil {
		return err
	}
	rep.Table(stdout)
	if a.reportPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(a.reportPath, append(b, '\n'), 0o644)
	}
	return nil
}

// firstToken is the first token of a local_token_file (NAME TOKEN or TOKEN
// a line).
func firstToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("bench: --token-file: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			return f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("bench: --token-file %s holds no token", path)
}

// benchEdgeProc is an edge process bench started beside its gateway.
type benchEdgeProc struct {
	cmd          *exec.Cmd
	api, metrics string
	log          *os.File
}

// startBenchEdge runs `xborder edge --as ID` in the gateway's folder (its
// development PKI) against that gateway, on free loopback ports, with its
// own store, and waits until it is ready (the hub answered it).
func startBenchEdge(ctx context.Context, exe string, gw *benchGateway, id string, logf func(string, ...any)) (*benchEdgeProc, error) {
	p1, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	p2, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	e := &benchEdgeProc{}
	if e.log, err = os.Create(filepath.Join(gw.dir, "edge.log")); err != nil {
		return nil, err
	}
	e.cmd = exec.Command(exe, "edge", "--as", id)
	e.cmd.Dir = gw.dir
	e.cmd.Env = append(os.Environ(),
		fmt.Sprintf("XBORDER_LISTEN=127.0.0.1:%d", p1),
		fmt.Sprintf("XBORDER_OPS_LISTEN=127.0.0.1:%d", p2),
		"XBORDER_HUB="+gw.base,
		"XBORDER_STORE=bolt:"+filepath.Join(gw.dir, "edge-data", "edge.db"),
	)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	logf("starting an edge for %s", id)
	if err := e.cmd.Start(); err != nil {
		e.log.Close()
		return nil, fmt.Errorf("bench: start edge: %w", err)
	}
	if err := bench.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", p2), 90*time.Second); err != nil {
		e.stop()
		b, _ := os.ReadFile(filepath.Join(gw.dir, "edge.log"))
		return nil, fmt.Errorf("%w\n%s", err, b)
	}
	e.api = fmt.Sprintf("http://127.0.0.1:%d", p1)
	e.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", p2)
	return e, nil
}

// stop ends the edge (SIGTERM, then SIGKILL after 10 s).
func (e *benchEdgeProc) stop() {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-done
		}
	}
	if e.log != nil {
		e.log.Close()
	}
}
