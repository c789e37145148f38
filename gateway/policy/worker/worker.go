// Package worker evaluates policies that are not in force — an uploaded
// candidate, the tests a new bundle must pass before it serves — in a
// child process of the same binary, so that nothing such a policy does can
// hurt the process that serves the exchange (STYLE 22).
//
// OPA cannot interrupt a built-in call: a deadline inside the gateway does
// not stop a built-in that never returns, and nothing in the gateway bounds
// the memory one evaluation takes. The child ("xborder policy worker") is
// started with an empty working directory, no environment, a lower
// priority than the gateway (nice 19), limits on its address space and CPU
// time (setrlimit, set by the child before it reads anything), and
// Landlock where the kernel has it, with no file and no network access at
// all: the policy files come over the pipe. The gateway
// talks to it over stdin/stdout (length-prefixed JSON), one request at a
// time, and kills it when a request outlives its deadline. A worker that
// died stays dead: every later request returns its DiedError, which says
// why ("exceeded its memory limit (512 MiB)", "did not finish within its
// deadline").
package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// Limits bound a worker.
type Limits struct {
	// Memory is the heap the worker may use (its address space is bounded
	// to what the runtime had at start plus this plus room for threads).
	Memory int64
	// CPU is the CPU time of the whole process (RLIMIT_CPU).
	CPU time.Duration
	// Decision is one decision's deadline inside the worker; the worker is
	// killed when an answer has not come DecisionGrace after it (a built-in
	// that ignores the deadline).
	Decision      time.Duration
	DecisionGrace time.Duration
	// Compile bounds loading a policy (its data-only rules are evaluated
	// then); Test bounds running its Rego tests and scenarios.
	Compile time.Duration
	Test    time.Duration
}

// Defaults.
const (
	DefaultMemory        = 512 << 20
	DefaultCPU           = 40 * time.Minute
	DefaultDecision      = 5 * time.Second
	DefaultDecisionGrace = 2 * time.Second
	DefaultCompile       = time.Minute
	DefaultTest          = 10 * time.Minute
)

// Options start a worker.
type Options struct {
	// Command is the program and the arguments that start a worker (the
	// running binary with "policy worker" when empty); its own flags are
	// appended.
	Command []string
	Limits  Limits
	Logger  *slog.Logger
	// Idle runs the worker in SCHED_IDLE, on processors nothing else
	// wants: for candidates beside live traffic (the console's impact and
	// shadow runs). Not for the tests of the policy about to serve, which
	// must finish however busy the machine is.
	Idle bool
}

func (o Options) withDefaults() Options {
	l := &o.Limits
	if l.Memory <= 0 {
		l.Memory = DefaultMemory
	}
	if l.CPU <= 0 {
		l.CPU = DefaultCPU
	}
	if l.Decision <= 0 {
		l.Decision = DefaultDecision
	}
	if l.DecisionGrace <= 0 {
		l.DecisionGrace = DefaultDecisionGrace
	}
	if l.Compile <= 0 {
		l.Compile = DefaultCompile
	}
	if l.Test <= 0 {
		l.Test = DefaultTest
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ErrDied is wrapped by every error of a worker that is no more.
var ErrDied = errors.New("the candidate's worker process ended")

// DiedError says why a worker ended.
type DiedError struct {
	Reason string
}

func (e *DiedError) Error() string { return "the candidate was stopped: " + e.Reason }

// Unwrap makes errors.Is(err, ErrDied) true.
func (e *DiedError) Unwrap() error { return ErrDied }

// Worker is one child process.
type Worker struct {
	o      Options
	cmd    *exec.Cmd
	dir    string
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *head
	hello  hello

	mu     sync.Mutex // one request at a time
	exited chan struct{}

	deathMu   sync.Mutex
	killedFor string
	death     *DiedError
}

// Start starts a worker and waits for its greeting.
func Start(ctx context.Context, o Options) (*Worker, error) {
	o = o.withDefaults()
	argv := o.Command
	if len(argv) == 0 {
		if !hooked.Load() && testing.Testing() {
			// A test binary without the hook would run its tests again.
			return nil, errors.New("worker: this test binary cannot be a worker: call worker.RunIfChild in its TestMain")
		}
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		argv = []string{exe, "policy", "worker"}
	}
	dir, err := os.MkdirTemp("", "xborder-worker-")
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	args := append(append([]string{}, argv[1:]...),
		fmt.Sprintf("--memory=%d", o.Limits.Memory),
		fmt.Sprintf("--cpu=%d", int64(o.Limits.CPU/time.Second)+1),
		fmt.Sprintf("--decision=%s", o.Limits.Decision), fmt.Sprintf("--idle=%t", o.Idle))
	cmd := exec.Command(argv[0], args...)
	cmd.Dir = dir
	cmd.Env = []string{} // nothing of the gateway's environment
	// The worker dies with the gateway, and is a process group of its own
	// (a terminal's signals are the gateway's to handle).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	w := &Worker{o: o, cmd: cmd, dir: dir, stderr: &head{max: 4 << 10}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	if w.in, err = cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("worker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("worker: start: %w", err)
	}
	go w.wait()
	var h response
	if _, err := w.call(ctx, nil, 30*time.Second, &h); err != nil {
		w.Close()
		return nil, err
	}
	w.hello = h.Hello
	if w.hello.Landlock == 0 {
		o.Logger.Debug("policy worker: Landlock is not available on this kernel; the worker runs with its limits, an empty folder and no environment only")
	}
	return w, nil
}

// Landlock is the Landlock ABI the worker restricted itself with (0: the
// kernel has none).
func (w *Worker) Landlock() int { return w.hello.Landlock }

// Pid is the worker's process id.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

func (w *Worker) wait() {
	err := w.cmd.Wait()
	os.RemoveAll(w.dir)
	w.deathMu.Lock()
	reason := w.killedFor
	if reason == "" {
		reason = w.classify(err)
	}
	w.death = &DiedError{Reason: reason}
	w.deathMu.Unlock()
	close(w.exited)
}

// classify says why a worker the gateway did not stop ended. Its standard
// error is read for the runtime's words only, never shown: it may carry
// pieces of the evaluated inputs.
func (w *Worker) classify(err error) string {
	mib := w.o.Limits.Memory >> 20
	out := w.stderr.Bytes()
	// (Under -race, a refused mapping reads "too many address space
	// collisions".)
	if bytes.Contains(out, []byte("out of memory")) || bytes.Contains(out, []byte("cannot allocate memory")) ||
		bytes.Contains(out, []byte("memory limit")) || bytes.Contains(out, []byte("address space collisions")) {
		return fmt.Sprintf("the candidate exceeded its memory limit (%d MiB)", mib)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			switch ws.Signal() {
			case syscall.SIGXCPU, syscall.SIGKILL:
				return fmt.Sprintf("the candidate exceeded its CPU time limit (%s)", w.o.Limits.CPU)
			}
			return fmt.Sprintf("the candidate's worker ended on signal %s", ws.Signal())
		}
		return fmt.Sprintf("the candidate's worker ended (exit status %d)", ee.ExitCode())
	}
	if err != nil {
		return "the candidate's worker ended: " + err.Error()
	}
	return "the candidate's worker ended"
}

// kill stops the worker for reason (the first reason stays).
func (w *Worker) kill(reason string) {
	w.deathMu.Lock()
	if w.killedFor == "" && w.death == nil {
		w.killedFor = reason
	}
	w.deathMu.Unlock()
	_ = w.cmd.Process.Kill()
}

// Err is nil while the worker runs, and then why it ended.
func (w *Worker) Err() error {
	select {
	case <-w.exited:
		w.deathMu.Lock()
		defer w.deathMu.Unlock()
		return w.death
	default:
		return nil
	}
}

// Done is closed when the worker has ended.
func (w *Worker) Done() <-chan struct{} { return w.exited }

// Close stops the worker (no error: it was asked to).
func (w *Worker) Close() {
	select {
	case <-w.exited:
		return
	default:
	}
	w.kill("stopped by the gateway")
	<-w.exited
}

// call sends req (nil: none, only read the greeting) and reads the answer
// into resp, killing the worker when it has not answered within d or ctx
// ends first.
func (w *Worker) call(ctx context.Context, req *request, d time.Duration, resp *response) (*response, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.Err(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		if req != nil {
			if err := writeFrame(w.in, req); err != nil {
				done <- err
				return
			}
		}
		done <- readFrame(w.out, resp)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case err = <-done:
	case <-t.C:
		w.kill(fmt.Sprintf("it did not finish within its deadline (%s)", d.Round(time.Millisecond)))
		<-done
		err = ErrDied
	case <-ctx.Done():
		w.kill("its job ended: " + ctx.Err().Error())
		<-done
		err = ErrDied
	}
	if err != nil {
		// A broken pipe or a short read: the worker is ending; say why.
		<-w.exited
		return nil, w.Err()
	}
	if resp.Fatal != "" {
		return nil, errors.New(resp.Fatal)
	}
	return resp, nil
}

// Bundle is a policy compiled in a worker: what the impact analysis needs
// of a candidate (Decide, FS, Version).
type Bundle struct {
	Version string
	Modules []string
	w       *Worker
	fsys    fs.FS
}

// Load compiles fsys in the worker (within Limits.Compile). The worker
// holds one policy at a time.
func (w *Worker) Load(ctx context.Context, fsys fs.FS) (*Bundle, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// The same rule as the gateway's own reader: a link must stay
			// inside the folder, and is read as its target.
			if err := policy.LinkInside(fsys, p); err != nil {
				return err
			}
			st, err := fs.Stat(fsys, p)
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil // policy.Compile reads regular files only
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files[p] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("worker: read the policy: %w", err)
	}
	var resp response
	if _, err := w.call(ctx, &request{Op: opLoad, Files: files}, w.o.Limits.Compile, &resp); err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, errors.New(resp.Err)
	}
	return &Bundle{Version: resp.Version, Modules: resp.Modules, w: w, fsys: fsys}, nil
}

// Test runs the bundle's Rego tests and scenarios in the worker (within
// Limits.Test).
func (b *Bundle) Test(ctx context.Context) (policy.TestReport, error) {
	var resp response
	if _, err := b.w.call(ctx, &request{Op: opTest}, b.w.o.Limits.Test, &resp); err != nil {
		return policy.TestReport{}, err
	}
	if resp.Err != "" {
		return policy.TestReport{}, errors.New(resp.Err)
	}
	if resp.Report == nil {
		return policy.TestReport{}, errors.New("worker: no test report")
	}
	return *resp.Report, nil
}

// Decide decides in with the bundle in the worker. Like policy.Bundle's,
// it returns a denial with every error; a timeout inside the worker wraps
// context.DeadlineExceeded, and a worker that had to be killed a DiedError.
func (b *Bundle) Decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	var resp response
	lim := b.w.o.Limits
	if _, err := b.w.call(ctx, &request{Op: opDecide, Input: &in}, lim.Decision+lim.DecisionGrace, &resp); err != nil {
		return policy.Deny("the candidate could not decide"), err
	}
	if resp.Decision == nil {
		resp.Decision = &policy.Decision{}
	}
	switch {
	case resp.Timeout:
		return *resp.Decision, fmt.Errorf("policy: evaluate: %w", context.DeadlineExceeded)
	case resp.Undefined:
		return *resp.Decision, policy.ErrUndefined
	case resp.Err != "":
		return *resp.Decision, errors.New(resp.Err)
	}
	return *resp.Decision, nil
}

// FS is the policy's files (as the gateway read them).
func (b *Bundle) FS() fs.FS { return b.fsys }

// Worker is the bundle's worker.
func (b *Bundle) Worker() *Worker { return b.w }

// Vet compiles fsys and runs its tests and scenarios in a worker of its
// own, which it stops before returning: the check a new bundle of the
// policy in force passes before the gateway compiles it (policy.Options.Vet).
func Vet(o Options) func(ctx context.Context, fsys fs.FS) (policy.TestReport, error) {
	return func(ctx context.Context, fsys fs.FS) (policy.TestReport, error) {
		w, err := Start(ctx, o)
		if err != nil {
			return policy.TestReport{}, err
		}
		defer w.Close()
		b, err := w.Load(ctx, fsys)
		if err != nil {
			return policy.TestReport{}, err
		}
		return b.Test(ctx)
	}
}

// head keeps the first max bytes written: the runtime's reason for a
// fatal error comes first, before the goroutines' stacks.
type head struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (h *head) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *head) Bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return bytes.Clone(h.buf)
}

// The protocol: each message is a 4-byte big-endian length and a JSON
// object. The worker greets first (its response with Hello), then answers
// each request in order.
const (
	opLoad   = "load"
	opTest   = "test"
	opDecide = "decide"
)

// maxFrame bounds one message: an upload unpacks to 16 MiB at most, which
// JSON's base64 makes larger.
const maxFrame = 64 << 20

type request struct {
	Op    string            `json:"op"`
	Files map[string][]byte `json:"files,omitempty"`
	Input *policy.Input     `json:"input,omitempty"`
}

type hello struct {
	Landlock int `json:"landlock"`
}

type response struct {
	Hello     hello              `json:"hello"`
	Fatal     string             `json:"fatal,omitempty"` // the worker cannot serve
	Err       string             `json:"err,omitempty"`
	Timeout   bool               `json:"timeout,omitempty"`
	Undefined bool               `json:"undefined,omitempty"`
	Version   string             `json:"version,omitempty"`
	Modules   []string           `json:"modules,omitempty"`
	Report    *policy.TestReport `json:"report,omitempty"`
	Decision  *policy.Decision   `json:"decision,omitempty"`
}

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("worker: a message of %d bytes is too large", len(b))
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func readFrame(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return fmt.Errorf("worker: a message of %d bytes is too large", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}
