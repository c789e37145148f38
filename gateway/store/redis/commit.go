package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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
// linked anew. The sequencer gathers what arrives while its batches are in
// flight into the next batch — up to batchOps operations in one script,
// one round trip and, with appendfsync always, one fsync — and keeps up to
// maxFlights batches in flight, each linked to the head the one before
// will leave, so that the chain's order costs no throughput: the batches
// play the part of bbolt's group commit. Operations of a batch touch
// distinct records (their conflict keys), so that checking them all before
// writing any is the same as checking each before its own writes.
//
// When a batch was sent and its answer lost, the sequencer moves the
// chain's fence (fenceScript) and reads the head: each batch in flight
// either applied before the fence — the head is its last entry or a later
// batch's — or can never apply. If
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
	// maxFlights is how many batches may be sent and not yet answered,
	// one after the other on the sequencer's own connection (pipe.go), so
	// that the server runs them in that order: each is linked to the head
	// the one before will leave, and if the one before does not apply, the
	// next cannot either (the script checks the head first) and is sent
	// again.
	maxFlights = 2
	// gatherDelay bounds the wait, after the batches in flight landed, for
	// their callers' next operations to join those already waiting: with
	// a few callers each waiting for its own answer, batches would
	// otherwise alternate between two halves of them. An operation
	// arriving at an idle sequencer never waits.
	gatherDelay = 500 * time.Microsecond
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
	// applied: {member, deliveries, steps, …} as it was built.
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
	// broken: a batch in flight did not apply; no batch is sent until the
	// others have landed.
	broken bool
	// pipe is the connection the batches go out on, in order.
	pipe *pipe

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

// flight is a batch sent to the server and not yet settled.
type flight struct {
	ops                 []*op
	preCount, postCount uint64
	preHead, postHead   string
	res                 []any
	err                 error
	done                bool
}

// applied reports whether the script's answer says it applied.
func (f *flight) applied() bool {
	return f.err == nil && len(f.res) == len(f.ops)+1 && f.res[0] == "ok"
}

func (q *sequencer) loop() {
	defer close(q.exited)
	defer func() {
		if q.pipe != nil {
			q.pipe.close(goredis.ErrClosed)
		}
	}()
	results := make(chan *flight, maxFlights)
	var flights []*flight
	landed := 0 // operations that just landed: their callers may be back soon
	for {
		// Send what waits while there is room, no earlier batch failed,
		// and the head is known (or can be read: nothing in flight).
		for len(flights) < maxFlights && !q.broken && (q.known || len(flights) == 0) {
			gather := 0
			if len(flights) == 0 {
				gather = landed
			}
			batch := q.take(len(flights) == 0, gather)
			landed = 0
			if batch == nil {
				break
			}
			if f := q.send(batch, results); f != nil {
				flights = append(flights, f)
			}
		}
		if len(flights) == 0 {
			if q.isClosed() {
				q.take(false, 0) // answers what is left
				return
			}
			continue
		}
		select {
		case f := <-results:
			f.done = true
		case <-q.wake:
			continue
		}
		// Settle in the order sent: each batch was linked to the head the
		// one before it leaves.
		for len(flights) > 0 && flights[0].done {
			f := flights[0]
			// A lost answer is resolved (unless an earlier batch of these
			// failed: then this one could not apply, land sends it again).
			if f.err != nil && sent(f.err) && !q.broken {
				if !allDone(flights) {
					break // resolved with those after it, once they landed
				}
				q.resolve(flights)
				flights = nil
				break
			}
			flights = flights[1:]
			q.land(f)
			landed += len(f.ops)
		}
		if len(flights) == 0 {
			q.broken = false
		}
	}
}

func allDone(fs []*flight) bool {
	for _, f := range fs {
		if !f.done {
			return false
		}
	}
	return true
}

func (q *sequencer) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// take takes the next batch: in arrival order, skipping (for the next
// batch) those that share a key with one taken. It waits for operations
// when block is set; nil when there are none, or the sequencer is closed
// (then every queued operation is answered). When landed operations just
// had their answers, it waits up to gatherDelay for as many more to join
// those waiting.
func (q *sequencer) take(block bool, landed int) []*op {
	expect := -1
	var deadline time.Time
	for {
		q.mu.Lock()
		if expect < 0 {
			expect = len(q.queue) + landed
		}
		if n := len(q.queue); n > 0 && n < expect && !q.closed {
			if deadline.IsZero() {
				deadline = time.Now().Add(gatherDelay)
			}
			if wait := time.Until(deadline); wait > 0 {
				q.mu.Unlock()
				t := time.NewTimer(wait)
				select {
				case <-q.wake:
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
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
		if !block {
			return nil
		}
		<-q.wake
		expect = 0 // idle: what arrives now goes at once
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

// send links the batch's entries to the head this process expects (after
// the batches in flight) and sends it; its answer arrives on results. It
// returns nil when the batch was answered without being sent.
func (q *sequencer) send(batch []*op, results chan<- *flight) *flight {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	if !q.known {
		err := q.readHead(ctx)
		cancel()
		if err != nil {
			// Nothing was sent.
			q.answer(batch, unavailableErr(err))
			return nil
		}
		ctx, cancel = context.WithTimeout(context.Background(), commitTimeout)
	}
	f := &flight{ops: batch, preCount: q.count, preHead: q.head}
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
	for _, o := range batch {
		opArgs := []any{len(o.entries)}
		for j := range o.entries {
			e := &o.entries[j]
			var v []byte
			err := e.Link(count, head)
			if err == nil {
				v, err = json.Marshal(e)
			}
			if err != nil {
				// Prepared entries link: a bug, not the server.
				cancel()
				q.answer([]*op{o}, err)
				q.requeue(without(batch, o))
				return nil
			}
			opArgs = append(opArgs, v, e.Hash)
			count, head = e.Seq, e.Hash
		}
		opArgs = append(opArgs, o.args...)
		args = append(args, o.kind, len(opArgs))
		args = append(args, opArgs...)
	}
	if q.pipe == nil || q.pipe.broken() {
		p, err := dialPipe(ctx, q.s.wopts, commitSrc)
		if err != nil {
			cancel()
			q.known = false
			q.answer(batch, unavailableErr(err)) // nothing was sent
			return nil
		}
		q.pipe = p
	}
	f.postCount, f.postHead = count, head
	q.count, q.head = count, head // what the next batch follows
	cmd := append([]any{"EVALSHA", commitScript.Hash(), len(q.keys)}, stringsToAny(q.keys)...)
	c := q.pipe.send(append(cmd, args...)...)
	p := q.pipe
	go func() {
		defer cancel()
		var reply any
		reply, f.err = p.wait(ctx, c)
		if f.err == nil {
			var ok bool
			if f.res, ok = reply.([]any); !ok {
				f.err = fmt.Errorf("redis: unexpected reply %T", reply)
			}
		}
		results <- f
	}()
	return f
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// land settles a batch whose answer arrived (or whose request never left).
// A batch that did not apply breaks the chain of the batches sent after
// it: they were linked to a head that never came, cannot apply, and are
// sent again.
func (q *sequencer) land(f *flight) {
	if q.broken {
		if f.applied() { // cannot happen: its head never came
			q.finishAll(f)
			return
		}
		q.requeue(f.ops)
		return
	}
	if f.applied() {
		q.finishAll(f)
		return
	}
	q.broken, q.known = true, false
	if f.err != nil && strings.HasPrefix(f.err.Error(), "NOSCRIPT") {
		// The server lost its scripts (SCRIPT FLUSH): a new connection
		// loads them again.
		q.pipe.close(f.err)
		for _, o := range f.ops {
			o.tries++
		}
		q.requeue(f.ops)
		return
	}
	if f.err != nil {
		// Refused by the server before its first write, or never sent.
		q.answer(f.ops, unavailableErr(f.err))
		return
	}
	switch f.res[0] {
	case "conflict":
		for _, o := range f.ops {
			o.tries++
		}
		q.requeue(f.ops)
	case "skip":
		if len(f.res) != len(f.ops)+1 {
			q.answer(f.ops, unavailableErr(errors.New("unexpected script reply")))
			return
		}
		var again []*op
		q.mu.Lock()
		for i, o := range f.ops {
			if n, ok := f.res[i+1].(int64); ok && n == 0 {
				again = append(again, o)
				continue
			}
			finish(o, f.res[i+1], errSkipped)
		}
		q.mu.Unlock()
		q.requeue(again)
	default:
		q.answer(f.ops, unavailableErr(errors.New("unexpected script reply")))
	}
}

func (q *sequencer) finishAll(f *flight) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range f.ops {
		finish(o, f.res[i+1], nil)
	}
}

// resolve settles the batches in flight when the first one's answer was
// lost (all of them landed): it moves the fence, so that none of them can
// apply any more, and reads the head, which names the last batch that
// applied (they apply in order, each linked to the one before). Batches
// after it did not apply and are sent again. If the head cannot be read,
// or is none of theirs, their callers get ErrOutcomeUnknown.
func (q *sequencer) resolve(fs []*flight) {
	q.known, q.mustFence = false, true
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	// told: the head read says which batches applied (-1: none).
	told, last := q.readHead(ctx) == nil, -1
	if told {
		matched := q.count == fs[0].preCount && q.head == fs[0].preHead
		for i, f := range fs {
			if q.count == f.postCount && q.head == f.postHead {
				matched, last = true, i
			}
		}
		told = matched // another writer's head says nothing of ours
	}
	for i, f := range fs {
		if f.applied() && i > last {
			last = i // a later batch's answer says the earlier ones applied
		}
	}
	cause := fs[0].err
	for i, f := range fs {
		switch {
		case i <= last && f.applied():
			q.finishAll(f)
		case i <= last:
			// Applied: the script's results are lost, its effect is not.
			q.mu.Lock()
			for _, o := range f.ops {
				finish(o, lostResult(o), nil)
			}
			q.mu.Unlock()
		case told:
			// Did not apply, and never will (fenced): send again.
			for _, o := range f.ops {
				o.tries++
			}
			q.requeue(f.ops)
		default:
			q.answer(f.ops, unknownErr(cause))
		}
	}
	if !told {
		q.known, q.mustFence = false, true
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

// lostResult is the result of an operation that applied, when the
// script's answer was lost: what its callers need of it.
func lostResult(o *op) any {
	if o.kind == "purge" {
		// Every message the operation was built to purge or forget, each
		// with the deliveries it was to delete and its steps.
		return o.purged
	}
	return int64(1)
}

// sent reports whether a failed call may have reached the server: not when
// the client is closed, the connection could not be made, or the server
// answered with an error (a script refused before its first write).
func sent(err error) bool {
	var rerr goredis.Error
	var reply replyError
	var oerr *net.OpError
	switch {
	case errors.As(err, &rerr), errors.As(err, &reply), errors.Is(err, errNotSent):
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
