// Package rediskv is the kv contract over Redis (7.0 or later) through
// go-redis. A bucket is a hash of "version:value" per key and a sorted set
// of its keys for ordered scans (ZRANGEBYLEX); a version is the revision of
// the commit that wrote the key, prefixed by the primary's replication
// id. A transaction reads with plain commands, buffers its writes, and
// commits them with one call of a generic Redis function (apply.lua:
// guards, then writes), loaded with FUNCTION LOAD REPLACE: functions are
// replicated and persisted, so a new primary has it after a failover.
//
// Every key of a store shares one hash tag ({name}), so that a store
// lives in one Redis Cluster slot.
//
// A commit can be made to wait for replicas (Options.AckReplicas): the
// function call and WAIT (WAITAOF on 7.2 and later) go in one pipeline,
// which go-redis writes on one connection — WAIT counts the replicas that
// hold the writes of its own connection, so on another pooled connection
// it would answer for writes that are not the commit's. For the same
// reason a commit asked where it landed (kv.WithPosition: the gateway's
// journal) reads INFO replication in that pipeline too.
package rediskv

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store/kv"
)

//go:embed apply.lua
var library string

const (
	fnApply = "xkv1_apply"
	fnCheck = "xkv1_check"
)

// page is how many keys a scan reads per round trip.
const page = 256

// DB is a kv.DB on a Redis database.
type DB struct {
	c     redis.UniversalClient
	name  string
	owned bool

	ack        int           // replicas a commit waits for
	ackTimeout time.Duration // how long it waits
	waitAOF    bool          // the server has WAITAOF (7.2+)

	notReplicated, unavailable, unknown atomic.Uint64
}

// Stats counts the commits that did not succeed for want of the group.
type Stats struct {
	// NotReplicated: applied on the primary, fewer replicas than asked in
	// time (kv.ErrNotReplicated).
	NotReplicated uint64
	// Unavailable: refused or not sent, nothing applied (kv.ErrUnavailable).
	Unavailable uint64
	// Unknown: sent and the answer lost (kv.ErrUnknown).
	Unknown uint64
}

// Stats returns the counters since Open.
func (d *DB) Stats() Stats {
	return Stats{d.notReplicated.Load(), d.unavailable.Load(), d.unknown.Load()}
}

// AckReplicas is how many replicas a commit waits for.
func (d *DB) AckReplicas() int { return d.ack }

var _ kv.DB = (*DB)(nil)

// New uses a client (Close leaves it open) and loads the function library.
// The client must not retry commands (MaxRetries -1): a commit retried
// after its first answer was lost would find its own writes and be
// reported as a conflict, and the caller would apply it again.
func New(ctx context.Context, c redis.UniversalClient, name string) (*DB, error) {
	return NewWith(ctx, c, Options{Name: name})
}

// NewWith is New with the acknowledgement in o (a negative AckReplicas is
// 0 here: the client does not say whether it is Sentinel's).
func NewWith(ctx context.Context, c redis.UniversalClient, o Options) (*DB, error) {
	name := o.Name
	if name == "" {
		return nil, errors.New("rediskv: empty store name")
	}
	var retries int
	switch c := c.(type) {
	case *redis.Client:
		retries = c.Options().MaxRetries
	case *redis.ClusterClient:
		retries = c.Options().MaxRetries
	default:
		return nil, fmt.Errorf("rediskv: a %T, whose retries cannot be checked", c)
	}
	if retries > 0 {
		return nil, errors.New("rediskv: the client retries commands (set MaxRetries to -1)")
	}
	if err := c.FunctionLoadReplace(ctx, library).Err(); err != nil {
		return nil, fmt.Errorf("rediskv: loading the function library: %w", err)
	}
	d := &DB{c: c, name: name, ack: max(o.AckReplicas, 0), ackTimeout: o.AckTimeout}
	if d.ackTimeout <= 0 {
		d.ackTimeout = DefaultAckTimeout
	}
	if d.ack > 0 {
		v, err := serverVersion(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("rediskv: reading the server's version: %w", err)
		}
		d.waitAOF = v >= 702
	}
	return d, nil
}

// Close closes the client if Open made it.
func (d *DB) Close() error {
	if d.owned {
		return d.c.Close()
	}
	return nil
}

// Client is the connection the store uses, for what is the server's own
// (its persistence settings, counters with a lifetime).
func (d *DB) Client() redis.UniversalClient { return d.c }

func (d *DB) hash(bucket string) string { return "{" + d.name + "}:h:" + bucket }
func (d *DB) zset(bucket string) string { return "{" + d.name + "}:z:" + bucket }

// View runs fn; if fn read with more than one round trip, the versions it
// saw are checked afterwards (Redis has no snapshot to read from).
func (d *DB) View(ctx context.Context, fn func(kv.Reader) error) error {
	t := d.begin(ctx)
	err := fn(t)
	return t.end(err, false)
}

// Update runs fn and commits its writes with one call of the apply
// function, if every key fn read still has the version fn saw.
func (d *DB) Update(ctx context.Context, fn func(kv.Tx) error) error {
	t := d.begin(ctx)
	err := fn(t)
	return t.end(err, true)
}

type ref struct{ bucket, key string }

type write struct {
	del   bool
	value []byte
}

type tx struct {
	d        *DB
	ctx      context.Context
	guards   map[ref]string // the version read ("" for absent)
	writes   map[ref]write
	read     map[ref]readValue // values read by Get or Prefetch, answered again without a round trip
	reads    int               // round trips that returned values
	scanning map[string]int
}

// readValue is a key as read: its version ("" for absent) and value.
type readValue struct {
	version string
	value   []byte
}

func (d *DB) begin(ctx context.Context) *tx {
	return &tx{d: d, ctx: ctx, guards: map[ref]string{}, writes: map[ref]write{}, read: map[ref]readValue{}}
}

// guard records a key read at version v. A key seen at two versions in
// one transaction is a conflict at once.
func (t *tx) guard(r ref, v string) error {
	if old, ok := t.guards[r]; ok && old != v {
		return kv.ErrConflict
	}
	t.guards[r] = v
	return nil
}

// split cuts a stored "version:value".
func split(s string) (version string, value []byte, err error) {
	i := strings.IndexByte(s[:min(len(s), 40)], ':')
	if i < 0 {
		return "", nil, errors.New("rediskv: a stored value without its version")
	}
	return s[:i], []byte(s[i+1:]), nil
}

func (t *tx) Get(bucket string, key []byte) ([]byte, bool, error) {
	if err := kv.Check(bucket, key); err != nil {
		return nil, false, err
	}
	r := ref{bucket, string(key)}
	if w, ok := t.writes[r]; ok {
		return w.value, !w.del, nil
	}
	// A key read before in this transaction is answered as read then: its
	// guard holds that version, which the commit (or a view's check)
	// compares with the server's.
	if rv, ok := t.read[r]; ok {
		return rv.value, rv.version != "", t.guard(r, rv.version)
	}
	s, err := t.d.c.HGet(t.ctx, t.d.hash(bucket), r.key).Result()
	if err == redis.Nil {
		t.reads++
		t.read[r] = readValue{}
		return nil, false, t.guard(r, "")
	}
	if err != nil {
		return nil, false, err
	}
	t.reads++
	v, value, err := split(s)
	if err != nil {
		return nil, false, err
	}
	t.read[r] = readValue{version: v, value: value}
	return value, true, t.guard(r, v)
}

// Prefetch implements kv.Prefetcher: the keys not yet read or written, one
// HMGET per bucket in one MULTI/EXEC, so that what it read is one moment
// of the server's (one read, as a single Get is). A key is guarded only
// when a Get asks for it.
func (t *tx) Prefetch(keys []kv.Key) error {
	byBucket := map[string][]string{}
	var buckets []string
	seen := map[ref]bool{}
	for _, k := range keys {
		if err := kv.Check(k.Bucket, k.Key); err != nil {
			return err
		}
		r := ref{k.Bucket, string(k.Key)}
		if _, ok := t.writes[r]; ok || seen[r] {
			continue
		}
		if _, ok := t.read[r]; ok {
			continue
		}
		seen[r] = true
		if _, ok := byBucket[r.bucket]; !ok {
			buckets = append(buckets, r.bucket)
		}
		byBucket[r.bucket] = append(byBucket[r.bucket], r.key)
	}
	if len(buckets) == 0 {
		return nil
	}
	cmds := make([]*redis.SliceCmd, len(buckets))
	_, err := t.d.c.TxPipelined(t.ctx, func(p redis.Pipeliner) error {
		for i, b := range buckets {
			cmds[i] = p.HMGet(t.ctx, t.d.hash(b), byBucket[b]...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	got := map[ref]readValue{}
	for i, b := range buckets {
		vals, err := cmds[i].Result()
		if err != nil {
			return err
		}
		for j, k := range byBucket[b] {
			var rv readValue
			if s, ok := vals[j].(string); ok {
				v, value, err := split(s)
				if err != nil {
					return err
				}
				rv = readValue{version: v, value: value}
			}
			got[ref{b, k}] = rv
		}
	}
	maps.Copy(t.read, got)
	t.reads++
	return nil
}

func (t *tx) Scan(bucket string, from, to []byte, fn func(k, v []byte) error) error {
	if err := kv.CheckBucket(bucket); err != nil {
		return err
	}
	if t.scanning == nil {
		t.scanning = map[string]int{}
	}
	t.scanning[bucket]++
	defer func() { t.scanning[bucket]-- }()
	// The transaction's own writes in the range, merged in key order.
	var mine []string
	for r := range t.writes {
		if r.bucket == bucket && (from == nil || r.key >= string(from)) && (to == nil || r.key < string(to)) {
			mine = append(mine, r.key)
		}
	}
	slices.Sort(mine)
	emitMine := func(k string) error {
		if w := t.writes[ref{bucket, k}]; !w.del {
			return fn([]byte(k), w.value)
		}
		return nil
	}
	lo, hi := "-", "+"
	if from != nil {
		lo = "[" + string(from)
	}
	if to != nil {
		hi = "(" + string(to)
	}
	for {
		keys, err := t.d.c.ZRangeByLex(t.ctx, t.d.zset(bucket), &redis.ZRangeBy{Min: lo, Max: hi, Count: page}).Result()
		if err != nil || len(keys) == 0 {
			return stop(err)
		}
		vals, err := t.d.c.HMGet(t.ctx, t.d.hash(bucket), keys...).Result()
		if err != nil {
			return err
		}
		t.reads++
		for i, k := range keys {
			for ; len(mine) > 0 && mine[0] < k; mine = mine[1:] {
				if err := emitMine(mine[0]); err != nil {
					return stop(err)
				}
			}
			if len(mine) > 0 && mine[0] == k {
				if err := emitMine(k); err != nil {
					return stop(err)
				}
				mine = mine[1:]
				continue
			}
			s, ok := vals[i].(string)
			if !ok {
				continue // deleted since the range was read
			}
			v, value, err := split(s)
			if err != nil {
				return err
			}
			if err := t.guard(ref{bucket, k}, v); err != nil {
				return err
			}
			if err := fn([]byte(k), value); err != nil {
				return stop(err)
			}
		}
		if len(keys) < page {
			break
		}
		lo = "(" + keys[len(keys)-1]
	}
	for _, k := range mine {
		if err := emitMine(k); err != nil {
			return stop(err)
		}
	}
	return nil
}

func stop(err error) error {
	if err == kv.Stop {
		return nil
	}
	return err
}

func (t *tx) Put(bucket string, key, value []byte) error {
	return t.set(bucket, key, write{value: append([]byte{}, value...)})
}

func (t *tx) Delete(bucket string, key []byte) error {
	return t.set(bucket, key, write{del: true})
}

func (t *tx) set(bucket string, key []byte, w write) error {
	if err := kv.Check(bucket, key); err != nil {
		return err
	}
	if t.scanning[bucket] > 0 {
		return kv.ErrScanWrite
	}
	t.writes[ref{bucket, string(key)}] = w
	return nil
}

// end commits (or checks) the transaction after fn returned ferr.
func (t *tx) end(ferr error, commit bool) error {
	if errors.Is(ferr, kv.ErrConflict) {
		return kv.ErrConflict
	}
	write := commit && ferr == nil && len(t.writes) > 0
	if !write && t.reads <= 1 {
		return ferr // one read is consistent with itself
	}
	keys := []string{"{" + t.d.name + "}:rev"}
	index := map[string]int{}
	bucket := func(b string) int {
		i, ok := index[b]
		if !ok {
			i = len(index) + 1
			index[b] = i
			keys = append(keys, t.d.hash(b), t.d.zset(b))
		}
		return i
	}
	args := make([]any, 0, 1+3*len(t.guards)+4*len(t.writes))
	args = append(args, len(t.guards))
	for r, v := range t.guards {
		args = append(args, bucket(r.bucket), r.key, v)
	}
	fnName, call := fnCheck, t.d.c.FCallRO
	if write {
		fnName, call = fnApply, t.d.c.FCall
		for r, w := range t.writes {
			op := "p"
			if w.del {
				op = "d"
			}
			args = append(args, op, bucket(r.bucket), r.key, w.value)
		}
	}
	if slot := kv.PositionSlot(t.ctx); write && (t.d.ack > 0 || slot != nil) {
		return t.d.commitAcked(t.ctx, keys, args, slot)
	}
	n, err := call(t.ctx, fnName, keys, args...).Int()
	switch {
	case err != nil:
		// What fn saw (and its own error, which it may owe to what it
		// saw) cannot be vouched for without the check.
		return t.d.failed(err, write)
	case err == nil && n == 0:
		return kv.ErrConflict
	}
	return ferr
}

// commitAcked sends the apply call and the wait for replicas in one
// pipeline, so on one connection; with a position slot (kv.WithPosition),
// INFO replication follows on that connection, so that the position read
// is the server's that made the commit, at or after it.
func (d *DB) commitAcked(ctx context.Context, keys []string, args []any, slot *kv.Position) error {
	var apply, wait *redis.Cmd
	var info *redis.StringCmd
	ms := d.ackTimeout.Milliseconds()
	d.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		apply = p.FCall(ctx, fnApply, keys, args...)
		// Pipeliner has no Wait or WaitAOF (go-redis keeps blocking
		// commands out of pipelines); Do sends them as they are.
		switch {
		case d.ack == 0:
		case d.waitAOF:
			wait = p.Do(ctx, "WAITAOF", 1, d.ack, ms)
		default:
			wait = p.Do(ctx, "WAIT", d.ack, ms)
		}
		if slot != nil {
			info = p.Info(ctx, "replication")
		}
		return nil
	})
	n, err := apply.Int()
	if err != nil {
		return d.failed(err, true)
	}
	if n == 0 {
		return kv.ErrConflict
	}
	if slot != nil {
		s, err := info.Result()
		if err != nil {
			d.unknown.Add(1)
			return fmt.Errorf("%w: INFO replication after the commit: %w", kv.ErrUnknown, err)
		}
		rep := parseInfo(s)
		slot.Epoch = rep["master_replid"]
		slot.Offset, _ = strconv.ParseInt(rep["master_repl_offset"], 10, 64)
	}
	if wait == nil {
		return nil
	}
	return d.waited(wait)
}

// Settle writes a counter and waits for the replicas on the same
// connection: the replication stream is in order, so once they hold that
// write they hold everything the primary held before it — what a read
// just found there too (kv.Settler). WAIT alone, on a connection that has
// written nothing, would answer every replica at once.
func (d *DB) Settle(ctx context.Context) error {
	if d.ack == 0 {
		return nil
	}
	var incr, wait *redis.Cmd
	ms := d.ackTimeout.Milliseconds()
	d.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.Do(ctx, "INCR", "{"+d.name+"}:settle")
		if d.waitAOF {
			wait = p.Do(ctx, "WAITAOF", 1, d.ack, ms)
		} else {
			wait = p.Do(ctx, "WAIT", d.ack, ms)
		}
		return nil
	})
	if err := incr.Err(); err != nil {
		if refused(err) {
			return fmt.Errorf("%w: %w", kv.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: settle: %w", kv.ErrUnknown, err)
	}
	return d.waited(wait)
}

// waited reads the answer of a WAIT or WAITAOF sent after a write on its
// connection.
func (d *DB) waited(wait *redis.Cmd) error {
	var got int64
	var err error
	if d.waitAOF {
		v, err := wait.Int64Slice()
		if err != nil {
			d.unknown.Add(1)
			return fmt.Errorf("%w: WAITAOF: %w", kv.ErrUnknown, err)
		}
		if len(v) == 2 && v[0] >= 1 {
			got = v[1]
		}
	} else if got, err = wait.Int64(); err != nil {
		d.unknown.Add(1)
		return fmt.Errorf("%w: WAIT: %w", kv.ErrUnknown, err)
	}
	if got < int64(d.ack) {
		d.notReplicated.Add(1)
		return fmt.Errorf("%w (%d of %d replicas within %v)", kv.ErrNotReplicated, got, d.ack, d.ackTimeout)
	}
	return nil
}

// failed names a commit's or a check's failure: a refusal of writes or a
// connection never made is ErrUnavailable (nothing applied), an answer
// lost after a commit was sent is ErrUnknown.
func (d *DB) failed(err error, write bool) error {
	if refused(err) {
		d.unavailable.Add(1)
		return fmt.Errorf("%w: %w", kv.ErrUnavailable, err)
	}
	var reply redis.Error
	if write && !errors.As(err, &reply) {
		d.unknown.Add(1)
		return fmt.Errorf("%w: %w", kv.ErrUnknown, err)
	}
	return fmt.Errorf("rediskv: commit: %w", err)
}

// refused: the server refused to run the command (it is a replica, it
// loads its data, too few replicas are attached, its master is down), or
// no connection was made — either way the command did not run.
func refused(err error) bool {
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		for _, p := range []string{"READONLY ", "NOREPLICAS ", "LOADING ", "MASTERDOWN ", "TRYAGAIN ", "CLUSTERDOWN "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return strings.Contains(err.Error(), "all sentinels specified in configuration are unreachable") ||
		errors.Is(err, redis.ErrPoolTimeout)
}
