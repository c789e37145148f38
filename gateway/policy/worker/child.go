package worker

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/xborder/xborder/gateway/policy"
)

// hooked is set by RunIfChild in a process that is not a worker: the
// program can start workers of itself.
var hooked atomic.Bool

// RunIfChild runs the worker and exits when this process was started as
// one; otherwise it notes that this program can be a worker and returns.
// The binary's main and the TestMain of every test binary that starts a
// gateway call it first thing.
func RunIfChild() {
	if IsChild(os.Args) {
		os.Exit(Main(os.Args))
	}
	hooked.Store(true)
}

// IsChild reports whether args (os.Args) start a worker: "<program> policy
// worker ...". The binary's main, and the TestMain of tests that start
// workers from the test binary, call Main first thing when it does.
func IsChild(args []string) bool {
	return len(args) >= 3 && args[1] == "policy" && args[2] == "worker"
}

// threadRoom is the address space the runtime's threads and their stacks
// may take beside the heap.
const threadRoom = 256 << 20

// Main is the worker process: it bounds itself, then answers requests on
// stdin/stdout until stdin closes. It returns the exit code.
func Main(args []string) int {
	fl := flag.NewFlagSet("policy worker", flag.ContinueOnError)
	memory := fl.Int64("memory", DefaultMemory, "heap bytes")
	cpu := fl.Int64("cpu", int64(DefaultCPU/time.Second), "CPU seconds")
	decision := fl.Duration("decision", DefaultDecision, "one decision's deadline")
	idle := fl.Bool("idle", false, "run in SCHED_IDLE (candidates beside live traffic)")
	if err := fl.Parse(args[3:]); err != nil {
		return 2
	}
	// The limits come first, before anything of the policy is read.
	vm := vmSize()
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: uint64(vm + *memory + threadRoom), Max: uint64(vm + *memory + threadRoom)}); err != nil {
		fmt.Fprintln(os.Stderr, "worker: RLIMIT_AS:", err)
		return 2
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: uint64(*cpu), Max: uint64(*cpu)}); err != nil {
		fmt.Fprintln(os.Stderr, "worker: RLIMIT_CPU:", err)
		return 2
	}
	// Live decisions come first: the worker yields the processors to the
	// gateway (a candidate whose every decision runs to its deadline
	// would otherwise take a processor from live traffic).
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, 19)
	if *idle {
		schedIdle()
	}
	// The collector works hard before the address space runs out, so that
	// a policy near its bound fails by the bound, not by garbage.
	debug.SetMemoryLimit(*memory)
	abi, _ := llsys.LandlockGetABIVersion()
	if abi > 0 {
		// No rule: no file may be read or written, no port bound or
		// connected to. What the worker needs is already open (its pipes).
		if err := landlock.V11.BestEffort().Restrict(); err != nil {
			fmt.Fprintln(os.Stderr, "worker: landlock:", err)
			return 2
		}
	}
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	s := &server{opts: policy.Options{Timeout: *decision, Logger: slog.New(slog.DiscardHandler)}}
	if err := s.send(out, &response{Hello: hello{Landlock: max(abi, 0)}}); err != nil {
		return 1
	}
	for {
		var req request
		if err := readFrame(in, &req); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintln(os.Stderr, "worker: read:", err)
			return 1
		}
		resp := s.handle(&req)
		if err := s.send(out, resp); err != nil {
			return 1
		}
	}
}

type server struct {
	opts   policy.Options
	bundle *policy.Bundle
}

func (s *server) send(out *bufio.Writer, r *response) error {
	if err := writeFrame(out, r); err != nil {
		return err
	}
	return out.Flush()
}

func (s *server) handle(req *request) *response {
	ctx := context.Background()
	switch req.Op {
	case opLoad:
		fsys := fstest.MapFS{}
		for p, b := range req.Files {
			fsys[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		}
		s.bundle = nil
		b, err := policy.Compile(ctx, fsys, s.opts)
		if err != nil {
			return &response{Err: err.Error()}
		}
		s.bundle = b
		return &response{Version: b.Version, Modules: b.Modules}
	case opTest:
		if s.bundle == nil {
			return &response{Fatal: "worker: no policy loaded"}
		}
		rep, err := s.bundle.Test(ctx)
		if err != nil {
			return &response{Err: err.Error()}
		}
		return &response{Report: &rep}
	case opDecide:
		if s.bundle == nil || req.Input == nil {
			return &response{Fatal: "worker: no policy loaded or no input"}
		}
		d, err := s.bundle.Decide(ctx, *req.Input)
		r := &response{Decision: &d}
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			r.Timeout = true
		case errors.Is(err, policy.ErrUndefined):
			r.Undefined = true
		default:
			r.Err = err.Error()
		}
		return r
	}
	return &response{Fatal: "worker: unknown request " + strconv.Quote(req.Op)}
}

// vmSize is the process's address space now (VmSize of /proc/self/status),
// 0 when unknown.
func vmSize() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmSize:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// schedIdle puts every thread of the worker in SCHED_IDLE, where the kernel
// runs it only on a processor nothing else wants: at nice 19 it still
// takes a share of a processor from live traffic. Threads the runtime
// starts later inherit it from the thread that makes them. Best effort: a
// kernel that refuses leaves nice 19.
func schedIdle() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = unix.SchedSetAttr(tid, attr, 0)
		}
	}
}
