package impact

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// Shadow evaluates live decisions with a candidate, off the request path,
// for a set time. Observe only queues (a bounded queue; what does not fit
// is dropped and counted): a live decision never waits for the candidate.
// One goroutine has the candidate decide (in its worker process) and
// records the difference by decision id, with rules and removed paths —
// never the input. The live decision alone acts. When the candidate's
// worker ends (killed at a deadline, out of memory), the run ends and says
// why.
type Shadow struct {
	Candidate string // the candidate's version
	Until     time.Time

	cand    Decider
	tally   *Tally
	onDrop  func()
	onEnd   func()
	endedMu sync.Mutex
	ended   string // why the run ended early
	queue   chan shadowJob
	seen    atomic.Int64
	dropped atomic.Int64
	stale   atomic.Int64 // live decisions of another live version than the one compared with
	live    string
	done    chan struct{}
	stop    context.CancelFunc
	once    sync.Once
}

type shadowJob struct {
	id   string
	in   policy.Input
	live policy.Decision
	at   time.Time
}

// ShadowOptions bound a shadow run.
type ShadowOptions struct {
	For      time.Duration // how long live decisions are observed
	Queue    int           // queued decisions at most (default 256)
	MaxDiffs int           // differences kept (default DefaultMaxDiffs)
	// Listed is what the report may show (ListedOf the policy in force;
	// DOMAIN's rules when nil).
	Listed *Listed
	OnDrop func() // told of each dropped decision (a metric)
	OnEnd  func() // called once when the run is over (stops the worker)
}

// StartShadow starts comparing liveVersion's decisions with cand (of
// version candVersion) until o.For has passed or ctx ends.
func StartShadow(ctx context.Context, cand Decider, candVersion, liveVersion string, o ShadowOptions) (*Shadow, error) {
	if cand == nil {
		return nil, errors.New("impact: no candidate")
	}
	if o.For <= 0 {
		return nil, errors.New("impact: a shadow run needs a duration")
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	ctx, cancel := context.WithTimeout(ctx, o.For)
	s := &Shadow{Candidate: candVersion, Until: time.Now().Add(o.For), cand: cand, onDrop: o.OnDrop, onEnd: o.OnEnd,
		tally: NewTally("shadow", o.MaxDiffs).Only(o.Listed), queue: make(chan shadowJob, o.Queue),
		live: liveVersion, done: make(chan struct{}), stop: cancel}
	go s.run(ctx)
	return s, nil
}

// Observe is the exchange's shadow hook: it queues the decision, or drops
// and counts it when the queue is full or the run is over. It never blocks.
func (s *Shadow) Observe(_ context.Context, decisionID string, in policy.Input, live policy.Decision, version string) {
	select {
	case <-s.done:
		return
	default:
	}
	if time.Now().After(s.Until) {
		return
	}
	s.seen.Add(1)
	if version != s.live {
		// The policy in force changed under the run: this decision is not
		// one of the version the candidate is compared with.
		s.stale.Add(1)
		return
	}
	select {
	case s.queue <- shadowJob{id: decisionID, in: in, live: live, at: time.Now().UTC()}:
	default:
		s.dropped.Add(1)
		if s.onDrop != nil {
			s.onDrop()
		}
	}
}

func (s *Shadow) run(ctx context.Context) {
	defer func() {
		if s.onEnd != nil {
			s.onEnd()
		}
		s.tally.Finish()
		close(s.done)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			// The run's end stops a decision in progress too: a worker
			// candidate is then killed.
			d, err := decide(ctx, s.cand, j.in)
			if errors.Is(err, worker.ErrDied) {
				s.endedMu.Lock()
				s.ended = err.Error()
				s.endedMu.Unlock()
				return
			}
			if ctx.Err() != nil {
				return
			}
			s.tally.Add(j.id, "", j.in, OutcomeOf(j.live, nil), OutcomeOf(d, err), j.at)
		}
	}
}

// Stop ends the run early.
func (s *Shadow) Stop() { s.once.Do(s.stop) }

// Done is closed when the run is over.
func (s *Shadow) Done() <-chan struct{} { return s.done }

// ShadowReport is a shadow run's state and its comparison so far.
type ShadowReport struct {
	Candidate   string    `json:"candidate"`
	LiveVersion string    `json:"live_version"`
	Until       time.Time `json:"until"`
	Running     bool      `json:"running"`
	Observed    int64     `json:"observed"` // live decisions seen
	Dropped     int64     `json:"dropped"`  // not compared: the queue was full
	OtherLive   int64     `json:"other_live_version"`
	Ended       string    `json:"ended,omitempty"` // why the run ended early
	Report      Report    `json:"report"`
}

// Report returns the run's figures so far.
func (s *Shadow) Report() ShadowReport {
	running := true
	select {
	case <-s.done:
		running = false
	default:
	}
	s.endedMu.Lock()
	ended := s.ended
	s.endedMu.Unlock()
	return ShadowReport{Ended: ended, Candidate: s.Candidate, LiveVersion: s.live, Until: s.Until, Running: running,
		Observed: s.seen.Load(), Dropped: s.dropped.Load(), OtherLive: s.stale.Load(), Report: s.tally.Report()}
}

// Settled reports whether every queued decision has been compared.
func (s *Shadow) Settled() bool { return len(s.queue) == 0 }
