package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// PolicyReport compares one decision by the embedded engine with the same
// decision asked of a separate `opa run --server` process over HTTP (the
// sidecar pattern), on the same policies, data and inputs (the policy
// scenarios), in the same run.
type PolicyReport struct {
	Decisions int `json:"decisions"` // per side and round
	Rounds    int `json:"rounds"`
	// CPU per decision (medians of the rounds). Embedded: this process.
	// Sidecar: the OPA process plus this process's HTTP client side
	// (encoding the input, the request, decoding the answer), which a
	// gateway using a sidecar would pay.
	EmbeddedCPU    float64 `json:"embedded_cpu_us_per_decision"`
	SidecarCPU     float64 `json:"sidecar_cpu_us_per_decision"`
	SidecarOPACPU  float64 `json:"sidecar_opa_cpu_us_per_decision"`
	Ratio          float64 `json:"sidecar_over_embedded"`
	EmbeddedWallUS float64 `json:"embedded_latency_us"`
	SidecarWallUS  float64 `json:"sidecar_latency_us"`
	OPAVersion     string  `json:"opa_version,omitempty"`
	Mismatches     int     `json:"mismatches"` // decisions that differ between the two
}

// ComparePolicy evaluates the scenario inputs of fsys n times per round on
// each side, sequentially on one connection, rounds times.
func ComparePolicy(ctx context.Context, fsys fs.FS, opaBin string, n, rounds int, logf func(string, ...any)) (*PolicyReport, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	b, err := policy.Compile(ctx, fsys, policy.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	names, err := policy.ScenarioFiles(fsys, policy.ScenarioDir)
	if err != nil {
		return nil, err
	}
	var inputs []policy.Input
	for _, name := range names {
		s, err := policy.LoadScenario(fsys, name)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, s.Input)
	}
	if len(inputs) == 0 {
		return nil, errors.New("bench: no scenarios to decide")
	}
	bodies := make([][]byte, len(inputs))
	for i, in := range inputs {
		if bodies[i], err = json.Marshal(map[string]any{"input": in}); err != nil {
			return nil, err
		}
	}

	dir, err := os.MkdirTemp("", "xborder-opa-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := copyServingPolicies(fsys, dir); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, opaBin, "run", "--server", "--addr", addr, "--log-level", "error", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start opa: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	base := "http://" + addr
	if err := waitHTTP(ctx, hc, base+"/health", 30*time.Second); err != nil {
		return nil, err
	}
	rep := &PolicyReport{Decisions: n, Rounds: rounds}
	if out, err := exec.Command(opaBin, "version").Output(); err == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		rep.OPAVersion = strings.TrimSpace(strings.TrimPrefix(first, "Version:"))
	}

	type sideDecision struct {
		Result policy.Decision `json:"result"`
	}
	askSidecar := func(i int) (policy.Decision, error) {
		resp, err := hc.Post(base+"/v1/data/xborder/decision", "application/json", bytes.NewReader(bodies[i]))
		if err != nil {
			return policy.Decision{}, err
		}
		defer resp.Body.Close()
		var d sideDecision
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return policy.Decision{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return policy.Decision{}, fmt.Errorf("bench: opa: %s", resp.Status)
		}
		return d.Result, nil
	}
	// Same answers on both sides, and warm-up.
	for i, in := range inputs {
		e, _ := b.Decide(ctx, in)
		s, err := askSidecar(i)
		if err != nil {
			return nil, err
		}
		ej, _ := json.Marshal(e)
		sj, _ := json.Marshal(s)
		if !bytes.Equal(ej, sj) {
			rep.Mismatches++
			logf("decision differs for %s:\n embedded %s\n sidecar  %s", names[i], ej, sj)
		}
	}

	var emb, side, sideOPA, embWall, sideWall []float64
	for r := range rounds {
		logf("policy round %d/%d: %d decisions embedded, %d by the sidecar", r+1, rounds, n, n)
		c0, w0 := selfCPU(), time.Now()
		for i := range n {
			if _, err := b.Decide(ctx, inputs[i%len(inputs)]); err != nil && !errors.Is(err, policy.ErrUndefined) {
				return nil, err
			}
		}
		emb = append(emb, float64((selfCPU()-c0).Microseconds())/float64(n))
		embWall = append(embWall, float64(time.Since(w0).Microseconds())/float64(n))

		o0, err := ProcCPU(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		c0, w0 = selfCPU(), time.Now()
		for i := range n {
			if _, err := askSidecar(i % len(inputs)); err != nil {
				return nil, err
			}
		}
		self := selfCPU() - c0
		wall := time.Since(w0)
		o1, err := ProcCPU(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		side = append(side, float64((self+o1-o0).Microseconds())/float64(n))
		sideOPA = append(sideOPA, float64((o1-o0).Microseconds())/float64(n))
		sideWall = append(sideWall, float64(wall.Microseconds())/float64(n))
	}
	rep.EmbeddedCPU, rep.SidecarCPU, rep.SidecarOPACPU = median(emb), median(side), median(sideOPA)
	rep.EmbeddedWallUS, rep.SidecarWallUS = median(embWall), median(sideWall)
	if rep.EmbeddedCPU > 0 {
		rep.Ratio = rep.SidecarCPU / rep.EmbeddedCPU
	}
	return rep, nil
}

// copyServingPolicies writes the policy modules (tests left out) and the
// data files of fsys to dir, as the gateway serves them.
func copyServingPolicies(fsys fs.FS, dir string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, "_test.rego") || strings.HasPrefix(p, policy.ScenarioDir+"/") ||
			!(strings.HasSuffix(p, ".rego") || filepath.Base(p) == policy.DataFile) {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is freePort for the command line.
func FreePort() (int, error) { return freePort() }

func waitHTTP(ctx context.Context, hc *http.Client, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not ready after %s", url, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitHTTP polls url until it answers 200.
func WaitHTTP(ctx context.Context, url string, limit time.Duration) error {
	return waitHTTP(ctx, &http.Client{Timeout: 2 * time.Second}, url, limit)
}
