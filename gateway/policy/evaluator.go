package policy

import (
	"runtime"
	"sync"
)

// OPA's evaluator recurses deeply: one decision needs a goroutine stack far
// larger than the 8 KiB a new goroutine starts with, and growing it (each
// doubling copies the stack) costs as much as a third of the decision when
// every request arrives on a fresh goroutine. Decisions therefore run on a
// few long-lived goroutines whose stacks have already grown.
//
// A decision is handed to an evaluator only when one is idle; otherwise the
// caller evaluates it itself, so that the pool never queues a decision, adds
// no latency under load and bounds no concurrency. A panic in an evaluation
// is raised again in the caller, as if the caller had evaluated.

// evaluators is shared by every bundle of the process: the goroutines hold no
// state of their own, only their grown stacks.
var evaluators = sync.OnceValue(func() *evaluatorPool {
	return newEvaluatorPool(runtime.GOMAXPROCS(0))
})

type evaluatorPool struct {
	jobs chan *evalJob // unbuffered: a send succeeds only when an evaluator is idle
}

type evalJob struct {
	run      func()
	done     chan struct{}
	panicked bool
	panicVal any
}

var evalJobs = sync.Pool{New: func() any { return &evalJob{done: make(chan struct{}, 1)} }}

func newEvaluatorPool(n int) *evaluatorPool {
	p := &evaluatorPool{jobs: make(chan *evalJob)}
	for range max(n, 1) {
		go p.serve()
	}
	return p
}

func (p *evaluatorPool) serve() {
	for j := range p.jobs {
		j.exec()
		j.done <- struct{}{}
	}
}

func (j *evalJob) exec() {
	defer func() {
		if v := recover(); v != nil {
			j.panicked, j.panicVal = true, v
		}
	}()
	j.run()
}

// do runs f on an idle evaluator, or in the caller when none is idle, and
// returns when f has returned.
func (p *evaluatorPool) do(f func()) {
	j := evalJobs.Get().(*evalJob)
	j.run = f
	select {
	case p.jobs <- j:
		<-j.done
	default:
		j.run = nil
		evalJobs.Put(j)
		f()
		return
	}
	panicked, v := j.panicked, j.panicVal
	j.run, j.panicked, j.panicVal = nil, false, nil
	evalJobs.Put(j)
	if panicked {
		panic(v)
	}
}
