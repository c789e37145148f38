package policy

import (
	"context"
	"runtime"
	"sync"
)

// OPA's evaluator recurses deeply: one decision needs a goroutine stack far
// larger than the 8 KiB a new goroutine starts with, and growing it (each
// doubling copies the stack) costs as much as a third of the decision when
// every request arrives on a fresh goroutine. Decisions therefore run on a
// few long-lived goroutines whose stacks have already grown, one per
// processor: a decision is work for a processor, and more of them at once
// only share the processors, each on a stack grown afresh.
//
// A decision waits for a free evaluator, in the order of arrival, or until
// its context ends. Its deadline starts when an evaluator takes it (decide),
// so that a burst queues instead of turning into denials for evaluations
// that missed their deadline while other decisions had the processors. A
// panic in an evaluation is raised again in the caller, as if the caller
// had evaluated.
//
// (The pool used to hand a decision over only when an evaluator was idle,
// and otherwise evaluate in the caller. Under load no evaluator is idle:
// callers grew their stacks for every evaluation, and every request in
// flight evaluated at once on the same processors, so that decisions
// missed their deadline and were denied.)

// evaluators is shared by every bundle of the process: the goroutines hold no
// state of their own, only their grown stacks.
var evaluators = sync.OnceValue(func() *evaluatorPool {
	return newEvaluatorPool(runtime.GOMAXPROCS(0))
})

type evaluatorPool struct {
	jobs chan *evalJob // unbuffered: a send succeeds when an evaluator takes the job
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

// do runs f on an evaluator and returns when f has returned; or, when ctx
// ends before an evaluator is free, returns ctx's error without running f.
func (p *evaluatorPool) do(ctx context.Context, f func()) error {
	j := evalJobs.Get().(*evalJob)
	j.run = f
	select {
	case p.jobs <- j:
	case <-ctx.Done():
		j.run = nil
		evalJobs.Put(j)
		return ctx.Err()
	}
	<-j.done
	panicked, v := j.panicked, j.panicVal
	j.run, j.panicked, j.panicVal = nil, false, nil
	evalJobs.Put(j)
	if panicked {
		panic(v)
	}
	return nil
}
