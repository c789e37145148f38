package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Every change that has an audit entry (Accept, RecordDenial, Ack,
// DeadLetter, Purge, and Append of an entry alone) is an operation of one
// replica's chain, applied by commitScript together with its entries: the
// change and its entries, or neither.
//
// Each chain has one sequencer in this process (each replica owns its
// chain). It links the entries in Go (audit.Entry.Link: SHA-256, which the
// server's Lua lacks) to the head it knows, and the script checks that the
// head is still that one before it writes anything; a conflicting head
// (another process writing the same chain) is read again and the batch
// linked anew. The sequencer sends one batch at a time and gathers what
// arrives meanwhile into the next batch — up to batchOps operations in one
// script, one round trip and, with appendfsync always, one fsync — so the
// chain's order costs no throughput: the batch plays the part of bbolt's
// group commit. Operations of a batch touch distinct records (their
// conflict keys), so that checking them all before writing any is the same
// as checking each before its own writes.
//
// When a batch was sent and its answer lost, the sequencer moves the
// chain's fence (fenceScript) and reads the head: the batch either applied
// before the fence — the head is its last entry — or can never apply. If
// even that fails, the callers get store.ErrOutcomeUnknown, and the next
// read of a message (Message, MessageTo) moves the fence first, so that
// what it reads is the truth.

const (
	// batchOps and batchBytes bound one batch.
	batchOps   = 128
	batchBytes = 8 << 20
	// commitTries bounds how often an operation is linked anew after a
	// conflicting head.
	commitTries = 8
	// commitTimeout bounds one script call of the sequencer (it acts for
	// several callers: none of their contexts is its own).
	commitTimeout = 5 * time.Second
)

// op is one change for the sequencer.
type op struct {
	kind string
	// keys the operation reads to decide (no other operation of its batch
	// may write them); exclusive: alone in its batch.
	keys      []string
	exclusive bool
	entries   []audit.Entry // prepared (audit.Prepare), linked by the sequencer
	args      []any         // the operation's own arguments
	size      int
	// purged is a purge's result should its answer be lost after it
	// applied: {member, deliveries, …} as it was built to purge.
	purged []any

	tries int
	// Set by the sequencer under its mutex.
	state     int
	abandoned bool // its caller gave up after it was sent
	res       any  // the script's result for it
	err       error
	done      chan struct{}
}

const (
	opQueued = iota
	opSent
	opDone
)

// sequencer orders one chain's operations of this process.
type sequencer struct {
	s       *Store
	replica string
	keys    []string // chain entries, head, replicas set, fence

	mu     sync.Mutex
	queue  []*op
	closed bool
	wake   chan struct{}
	exited chan struct{}

	// The head this process knows, owned by the loop.
	known bool
	count uint64
	head  string
	fence string
	// mustFence: the next head read moves the fence (first use, and after
	// an answer was lost).
	mustFence bool

	// unknown counts callers told ErrOutcomeUnknown; resolved is unknown
	// as of the last fence, so that readers know when to move it first.
	unknown, resolved atomic.Int64
	fenceMu           sync.Mutex
}

func newSequencer(s *Store, replica string) *sequencer {
	q := &sequencer{s: s, replica: replica, keys: []string{
		s.chainKey("e", replica), s.chainKey("h", replica), s.prefix + "audit:replicas", s.chainKey("f", replica),
	}, wake: make(chan struct{}, 1), exited: make(chan struct{}), mustFence: true}
	go q.loop()
	return q
}

// sequencer returns the chain's sequencer, started on first use.
func (s *Store) sequencer(replica string) (*sequencer, error) {
	if err := audit.CheckReplica(replica); err != nil {
		return nil, err
	}
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	if s.closed {
		return nil, unavailableErr(goredis.ErrClosed)
	}
	q := s.seqs[replica]
	if q == nil {
		q = newSequencer(s, replica)
		s.seqs[replica] = q
	}
	return q, nil
}

// do runs o and returns its result. A caller whose context ends before o
// was sent gets ErrUnavailable (o will not be sent); after it was sent,
// ErrOutcomeUnknown.
func (q *sequencer) do(ctx context.Context, opName string, o *op) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(opName, err)
	}
	if err := q.s.writable(ctx); err != nil {
		return nil, err
	}
	o.done = make(chan struct{})
	for _, e := range o.entries {
		o.size += len(e.MessageID) + 512
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, unavailable(opName, goredis.ErrClosed)
	}
	q.queue = append(q.queue, o)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		q.mu.Lock()
		switch o.state {
		case opQueued:
			q.remove(o)
			o.state = opDone
			q.mu.Unlock()
			return nil, unavailable(opName, ctx.Err())
		case opSent:
			o.abandoned = true
			q.mu.Unlock()
			q.unknown.Add(1)
			return nil, unknownOutcome(opName, ctx.Err())
		}
		q.mu.Unlock()
	}
	if errors.Is(o.err, store.ErrOutcomeUnknown) {
		q.unknown.Add(1)
	}
	if o.err != nil {
		return o.res, fmt.Errorf("redis: %s: %w", opName, o.err)
	}
	return o.res, nil
}

func (q *sequencer) remove(o *op) {
	for i, x := range q.queue {
		if x == o {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			return
		}
	}
}

// finish answers o (under q.mu).
func finish(o *op, res any, err error) {
	if o.state == opDone {
		return
	}
	o.state, o.res, o.err = opDone, res, err
	close(o.done)
}

func (q *sequencer) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.exited
}

func (q *sequencer) loop() {
	defer close(q.exited)
	for {
		batch := q.take()
		if batch == nil {
			return
		}
		q.commit(batch)
	}
}

// take waits for operations and takes the next batch: in arrival order,
// skipping (for the next batch) those that share a key with one taken.
func (q *sequencer) take() []*op {
	for {
		q.mu.Lock()
		if q.closed {
			for _, o := range q.queue {
				finish(o, nil, unavailableErr(goredis.ErrClosed))
			}
			q.queue = nil
			q.mu.Unlock()
			return nil
		}
		if len(q.queue) > 0 {
			var batch, rest []*op
			taken := map[string]bool{}
			size := 0
			for i, o := range q.queue {
				full := len(batch) == batchOps || (len(batch) > 0 && size+o.size > batchBytes)
				if full || (o.exclusive && len(batch) > 0) {
					rest = append(rest, q.queue[i:]...)
					break
				}
				clash := false
				for _, k := range o.keys {
					clash = clash || taken[k]
				}
				if clash {
					rest = append(rest, o)
					continue
				}
				for _, k := range o.keys {
					taken[k] = true
				}
				o.state = opSent
				batch = append(batch, o)
				size += o.size
				if o.exclusive {
					rest = append(rest, q.queue[i+1:]...)
					break
				}
			}
			q.queue = rest
			q.mu.Unlock()
			return batch
		}
		q.mu.Unlock()
		<-q.wake
	}
}

// requeue puts ops back at the front, in their order; abandoned ones are
// dropped (their callers were told the outcome is unknown, and they did
// not apply).
func (q *sequencer) requeue(ops []*op) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var back []*op
	for _, o := range ops {
		if o.abandoned {
			finish(o, nil, unavailableErr(errors.New("abandoned")))
			continue
		}
		if o.tries > commitTries {
			finish(o, nil, unavailableErr(audit.ErrConflict))
			continue
		}
		o.state = opQueued
		back = append(back, o)
	}
	q.queue = append(back, q.queue...)
	if len(q.queue) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (q *sequencer) answer(ops []*op, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, o := range ops {
		finish(o, nil, err)
	}
}

// readHead learns the head (moving the fence first when it must).
func (q *sequencer) readHead(ctx context.Context) error {
	script := headScript
	if q.mustFence {
		script = fenceScript
	}
	count, head, fence, err := q.s.head3(ctx, script, q.keys)
	if err != nil {
		return err
	}
	q.count, q.head, q.fence, q.known = count, head, fence, true
	if q.mustFence {
		q.mustFence = false
	}
	return nil
}

// commit links the batch's entries to the head and runs commitScript.
func (q *sequencer) commit(batch []*op) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if !q.known {
		if err := q.readHead(ctx); err != nil {
			// Nothing was sent.
			q.answer(batch, unavailableErr(err))
			return
		}
	}
	count, head := q.count, q.head
	fault := ""
	if q.s.opts.Fault != nil {
		for _, o := range batch {
			if err := q.s.opts.Fault(o.kind); err != nil {
				fault = "ERR injected fault: " + err.Error()
			}
		}
	}
	args := []any{q.replica, count, head, q.fence, len(batch), fault}
	total := 0
	for _, o := range batch {
		opArgs := []any{len(o.entries)}
		for j := range o.entries {
			e := &o.entries[j]
			if err := e.Link(count, head); err != nil {
				// Prepared entries link; this is a bug, not the server.
				q.answer([]*op{o}, err)
				q.requeue(without(batch, o))
				return
			}
			v, err := json.Marshal(e)
			if err != nil {
				q.answer([]*op{o}, err)
				q.requeue(without(batch, o))
				return
			}
			opArgs = append(opArgs, v, e.Hash)
			count, head = e.Seq, e.Hash
			total++
		}
		opArgs = append(opArgs, o.args...)
		args = append(args, o.kind, len(opArgs))
		args = append(args, opArgs...)
	}
	res, err := commitScript.Run(ctx, q.s.w, q.keys, args...).Slice()
	if err != nil {
		q.failed(ctx, batch, err, count, head)
		return
	}
	if len(res) != len(batch)+1 && !(len(res) == 1 && res[0] == "conflict") {
		q.known = false
		q.answer(batch, unavailableErr(errors.New("unexpected script reply")))
		return
	}
	switch res[0] {
	case "conflict":
		q.known = false
		for _, o := range batch {
			o.tries++
		}
		q.requeue(batch)
	case "skip":
		var again []*op
		q.mu.Lock()
		for i, o := range batch {
			if n, ok := res[i+1].(int64); ok && n == 0 {
				again = append(again, o)
				continue
			}
			finish(o, res[i+1], errSkipped)
		}
		q.mu.Unlock()
		q.requeue(again)
	case "ok":
		q.count, q.head = count, head
		q.mu.Lock()
		for i, o := range batch {
			finish(o, res[i+1], nil)
		}
		q.mu.Unlock()
	default:
		q.known = false
		q.answer(batch, unavailableErr(errors.New("unexpected script reply")))
	}
}

// errSkipped marks an operation the script found would not apply; its
// result says why.
var errSkipped = errors.New("skipped")

func without(ops []*op, x *op) []*op {
	out := make([]*op, 0, len(ops))
	for _, o := range ops {
		if o != x {
			out = append(out, o)
		}
	}
	return out
}

// failed handles a batch whose script call returned an error. A refusal by
// the server (an error reply) or a request that never left means nothing
// was written; an answer lost on the way back is resolved with the fence.
func (q *sequencer) failed(ctx context.Context, batch []*op, err error, count uint64, head string) {
	q.known = false
	if !sent(err) {
		q.answer(batch, unavailableErr(err))
		return
	}
	// The answer was lost: fence, then the head says whether it applied.
	beforeCount, beforeHead := q.count, q.head
	q.mustFence = true
	rctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if rerr := q.readHead(rctx); rerr != nil {
		q.mustFence = true
		q.known = false
		q.answer(batch, unknownErr(err))
		return
	}
	switch {
	case q.count == count && q.head == head:
		// Applied: the script's results are lost, its effect is not.
		q.mu.Lock()
		for _, o := range batch {
			finish(o, lostResult(o), nil)
		}
		q.mu.Unlock()
	case q.count == beforeCount && q.head == beforeHead:
		// Not applied, and now never will: send again.
		for _, o := range batch {
			o.tries++
		}
		q.requeue(batch)
	default:
		q.answer(batch, unknownErr(err))
	}
}

// lostResult is the result of an operation that applied, when the
// script's answer was lost: what its callers need of it.
func lostResult(o *op) any {
	if o.kind == "purge" {
		// Every message the operation was built to purge, each with the
		// deliveries it was to delete.
		return o.purged
	}
	return int64(1)
}

// sent reports whether a failed call may have reached the server: not when
// the client is closed, the connection could not be made, or the server
// answered with an error (a script refused before its first write).
func sent(err error) bool {
	var rerr goredis.Error
	var oerr *net.OpError
	switch {
	case errors.As(err, &rerr):
		return false
	case errors.Is(err, goredis.ErrClosed), errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrPoolExhausted):
		return false
	case errors.As(err, &oerr) && oerr.Op == "dial":
		return false
	}
	return true
}

func unavailableErr(err error) error {
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

func unknownErr(err error) error {
	return fmt.Errorf("%w: %w: %w", store.ErrUnavailable, store.ErrOutcomeUnknown, err)
}

// settle moves the fence if an operation's outcome was reported unknown
// since the last fence, so that a read after it sees the truth: the
// operation applied before the fence, or never will.
func (q *sequencer) settle(ctx context.Context) error {
	n := q.unknown.Load()
	if n == q.resolved.Load() {
		return nil
	}
	q.fenceMu.Lock()
	defer q.fenceMu.Unlock()
	if n == q.resolved.Load() {
		return nil
	}
	if _, err := fenceScript.Run(ctx, q.s.w, []string{q.keys[0], q.keys[1], q.keys[3]}).Slice(); err != nil {
		return err
	}
	q.resolved.Store(n)
	return nil
}

// head3 runs headScript or fenceScript.
func (s *Store) head3(ctx context.Context, script *goredis.Script, keys []string) (uint64, string, string, error) {
	res, err := script.Run(ctx, s.w, []string{keys[0], keys[1], keys[3]}).Slice()
	if err != nil {
		return 0, "", "", err
	}
	if len(res) != 3 {
		return 0, "", "", errors.New("unexpected script reply")
	}
	n, _ := res[0].(int64)
	head, _ := res[1].(string)
	var fence string
	switch f := res[2].(type) {
	case string:
		fence = f
	case int64:
		fence = strconv.FormatInt(f, 10)
	}
	return uint64(n), head, fence, nil
}
