package policy

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
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

// OPA cannot interrupt a built-in call: an evaluation stuck in one (a
// JSON Schema whose anyOf recurses through "#" on a deep value) holds its
// evaluator for ever. Its caller does not wait for ever: when the answer
// has not come by the evaluation's deadline and a grace, the caller gets a
// denial (ErrStuck), the evaluator is counted stuck and a new one takes
// its place, so that the other decisions keep their evaluators. When the
// stuck evaluation ends after all, its goroutine leaves. Replacements are
// bounded (maxStuck): a policy that wedges every decision cannot turn the
// gateway into goroutines spinning on built-ins; it shows in Evaluators
// and in readiness.

// ErrStuck is returned (wrapped) for an evaluation that did not return by
// its deadline and its grace: it is stuck in a built-in.
var ErrStuck = errors.New("the evaluation is stuck in a built-in past its deadline")

// stuckGrace is how long past its deadline an evaluation may take to
// notice its cancellation before its evaluator is counted stuck.
const stuckGrace = time.Second

// evaluators is shared by every bundle of the process: the goroutines hold no
// state of their own, only their grown stacks.
var evaluators = sync.OnceValue(func() *evaluatorPool {
	return newEvaluatorPool(runtime.GOMAXPROCS(0))
})

// EvaluatorState says how many evaluators serve and how many are stuck in
// a built-in (readiness, metrics).
type EvaluatorState struct {
	Serving int `json:"serving"`
	Stuck   int `json:"stuck"`
	// StuckTotal counts the evaluations ever found stuck.
	StuckTotal int64 `json:"stuck_total"`
}

// Evaluators is the state of the process's evaluators.
func Evaluators() EvaluatorState {
	p := evaluators()
	return EvaluatorState{Serving: int(p.serving.Load()), Stuck: int(p.stuck.Load()), StuckTotal: p.stuckTotal.Load()}
}

type evaluatorPool struct {
	jobs       chan *evalJob // unbuffered: a send succeeds when an evaluator takes the job
	maxStuck   int64
	serving    atomic.Int64
	stuck      atomic.Int64
	stuckTotal atomic.Int64
}

// The state of a job: an evaluator finishes it (jobDone) or its caller
// gives up on it (jobAbandoned), whichever comes first.
const (
	jobRunning int32 = iota
	jobDone
	jobAbandoned
)

type evalJob struct {
	run      func()
	done     chan struct{}
	state    atomic.Int32
	replaced atomic.Bool // another evaluator took its place when it was abandoned
	panicked bool
	panicVal any
}

var evalJobs = sync.Pool{New: func() any { return &evalJob{done: make(chan struct{}, 1)} }}

func newEvaluatorPool(n int) *evaluatorPool {
	n = max(n, 1)
	p := &evaluatorPool{jobs: make(chan *evalJob), maxStuck: int64(4 * n)}
	for range n {
		p.serving.Add(1)
		go p.serve()
	}
	return p
}

func (p *evaluatorPool) serve() {
	for j := range p.jobs {
		j.exec()
		if !j.state.CompareAndSwap(jobRunning, jobDone) {
			// Its caller gave up on it: this evaluator leaves if another
			// took its place, and serves again otherwise.
			p.stuck.Add(-1)
			if j.replaced.Load() {
				return
			}
			p.serving.Add(1)
			continue
		}
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
// ends before an evaluator is free, returns ctx's error without running f;
// or, when f has not returned within limit of its start (its deadline and
// a grace), returns ErrStuck and leaves f to its evaluator, which another
// takes the place of.
func (p *evaluatorPool) do(ctx context.Context, limit time.Duration, f func()) error {
	j := evalJobs.Get().(*evalJob)
	j.run = f
	j.state.Store(jobRunning)
	select {
	case p.jobs <- j:
	case <-ctx.Done():
		j.run = nil
		evalJobs.Put(j)
		return ctx.Err()
	}
	t := time.NewTimer(limit)
	select {
	case <-j.done:
		t.Stop()
	case <-t.C:
		replace := p.stuck.Load() < p.maxStuck
		j.replaced.Store(replace)
		if j.state.CompareAndSwap(jobRunning, jobAbandoned) {
			// j stays with its evaluator (never back in the pool).
			p.stuckTotal.Add(1)
			p.stuck.Add(1)
			if !replace {
				p.serving.Add(-1)
			} else {
				go p.serve()
			}
			return ErrStuck
		}
		<-j.done // it finished as the timer fired
	}
	panicked, v := j.panicked, j.panicVal
	j.run, j.panicked, j.panicVal = nil, false, nil
	evalJobs.Put(j)
	if panicked {
		panic(v)
	}
	return nil
}
