// Package kv is the store's transactional key-value contract: named buckets
// of byte keys in byte order, read and update transactions, and one error
// for a lost race. The domain is written once over it; a backend is a
// driver (boltkv, rediskv) that passes the conformance suite (this
// package's tests: suite_test.go, run on each driver by drivers_test.go).
//
// An update is optimistic and its guards are the keys it read: every key a
// transaction saw through Get or Scan (its version, or its absence) must be
// unchanged when the transaction commits, or nothing is written and Update
// returns ErrConflict; the caller runs the transaction again. A driver
// whose writers are serialised (bbolt) meets this by exclusion. A
// consensus store meets it with one conditional transaction: etcd's
// Txn().If(ModRevision(k) == read revision, or CreateRevision(k) == 0 for
// an absent key, for every key read).Then(every put and delete) — the
// reads are collected while fn runs, the writes are buffered, and a
// transaction that did not succeed is ErrConflict.
//
// What a transaction saw is consistent: when View or Update returns nil,
// or fn's own error, every key fn read had, together, the values fn saw at
// one moment. A driver that cannot read a snapshot checks this after fn
// and returns ErrConflict instead (fn's failure may have come from the
// inconsistent view). Gaps are not guarded: a key created inside a range
// after Scan passed it is no conflict.
package kv

import (
	"context"
	"errors"
	"fmt"
)

// ErrConflict: a key the transaction read changed before it committed.
// Nothing of the transaction was written; run it again.
var ErrConflict = errors.New("kv: conflict: a key the transaction read changed before its commit")

// ErrUnknown: a commit was sent and its answer lost (a network or a server
// failing); it may have been applied, or not.
var ErrUnknown = errors.New("kv: the commit's outcome is unknown")

// ErrNotReplicated: the commit was applied on a primary but fewer replicas
// than asked acknowledged it in time, so a failover may still erase it. It
// is an ErrUnknown (errors.Is holds): the caller answers outcome unknown and
// reads back later.
var ErrNotReplicated = fmt.Errorf("%w: applied on the primary, not yet held by enough replicas", ErrUnknown)

// ErrUnavailable: the store takes no writes now (no primary answers, or it
// refuses writes: read-only, loading, too few replicas); nothing of the
// commit was applied.
var ErrUnavailable = errors.New("kv: the store takes no writes now")

// Stop, returned by a Scan callback, ends the scan without an error.
var Stop = errors.New("kv: stop scan")

// DB is a store of buckets.
type DB interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Reader) error) error
	// Update runs fn and commits its writes atomically, all or none, if
	// no key it read has changed; otherwise it returns ErrConflict. If fn
	// returns an error nothing is written. ErrUnknown: the commit was
	// sent and its answer lost; the caller reads back.
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Settler is a DB whose primary may hold commits its replicas do not hold
// yet (a commit answered ErrNotReplicated or ErrUnknown, then read back).
// Settle returns nil once everything the primary held when it was called
// is held as a commit's acknowledgement requires; ErrNotReplicated or
// ErrUnavailable otherwise. An answer built from what a read found is
// given only after it.
type Settler interface {
	Settle(ctx context.Context) error
}

// Reader reads within a transaction, which one goroutine uses. Returned
// slices are valid until the transaction ends and must not be modified;
// copy what is kept.
type Reader interface {
	// Get returns the key's value and whether the key exists.
	Get(bucket string, key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for each key in [from, to) in byte order (nil: from
	// the first key, to the last). fn returning Stop ends the scan early;
	// any other error ends it and is returned. fn must not write to the
	// bucket being scanned.
	Scan(bucket string, from, to []byte, fn func(key, value []byte) error) error
}

// Tx reads and writes within an update. A transaction reads its own
// writes.
type Tx interface {
	Reader
	// Put sets the key's value, creating the bucket if needed.
	Put(bucket string, key, value []byte) error
	// Delete removes the key; removing an absent key is no error.
	Delete(bucket string, key []byte) error
}

// Key names one key of a bucket.
type Key struct {
	Bucket string
	Key    []byte
}

// Prefetcher is implemented by the transactions of a driver whose reads
// are round trips to a server (rediskv): Prefetch reads the keys a
// transaction is about to Get in one round trip, and those Gets then
// answer from what it read, each guarded by the version it read, as if
// read then. A transaction's own writes still come first. Prefetch is an
// optimisation: a transaction that does not call it, or a driver that
// does not implement it (boltkv), reads the same values; an error leaves
// nothing prefetched, and the Gets read for themselves.
type Prefetcher interface {
	Prefetch(keys []Key) error
}

// Prefetch calls r's Prefetch if it has one.
func Prefetch(r Reader, keys []Key) error {
	if p, ok := r.(Prefetcher); ok && len(keys) > 0 {
		return p.Prefetch(keys)
	}
	return nil
}

// ErrScanWrite: a write to a bucket from inside a scan of that bucket.
var ErrScanWrite = errors.New("kv: write to a bucket during a scan of it")

// Check refuses what no driver stores: an empty bucket name or key, or a
// key longer than MaxKey. Drivers call it on every Get, Put and Delete,
// and CheckBucket on every Scan.
func Check(bucket string, key []byte) error {
	switch {
	case bucket == "":
		return errEmptyBucket
	case len(key) == 0:
		return errors.New("kv: empty key")
	case len(key) > MaxKey:
		return fmt.Errorf("kv: key of %d bytes (at most %d)", len(key), MaxKey)
	}
	return nil
}

// CheckBucket refuses an empty bucket name.
func CheckBucket(bucket string) error {
	if bucket == "" {
		return errEmptyBucket
	}
	return nil
}

var errEmptyBucket = errors.New("kv: empty bucket name")

// MaxKey is the longest key (bbolt's limit).
const MaxKey = 32768
