package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
)

// Check reads the whole store and says what it checked on w: every page
// (bbolt's own Tx.Check: structure, key order, free pages), every message
// record, every queued delivery with its index entry and its queue's depth,
// every dead letter with its index entry, the retention index and the audit
// chains' entries (their links and checkpoints are audit.VerifyLive's, with
// the gateway's keys). It returns the first problem, wrapping
// store.ErrDamaged. It is `xborder store check`, run while the gateway is
// stopped (a read-only store).
func (s *Store) Check(ctx context.Context, w io.Writer) (err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	defer s.guard(&err)
	if err := checkFile(s.path); err != nil {
		return damagedFile(s.path, "%v", err)
	}
	// Every pass reads in the one read transaction, so that they all see
	// the same state of the file.
	return s.db.View(func(tx *bbolt.Tx) error {
		c := &fileCheck{tx: tx, w: w, path: s.path}
		if err := c.pages(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, pass := range []func() error{c.buckets, c.messages, c.queues, c.deadLetters, c.retention, c.chains} {
			if err := pass(); err != nil {
				return err
			}
		}
		c.quarantine()
		return nil
	})
}

// damagedFile is the error of a problem Check found in the file at path.
func damagedFile(path, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", store.ErrDamaged, path, fmt.Sprintf(format, a...))
}

// fileCheck is one run of Check: the read transaction its passes share,
// where they say what they checked, and the file they name in their errors.
type fileCheck struct {
	tx   *bbolt.Tx
	w    io.Writer
	path string
}

func (c *fileCheck) bad(format string, a ...any) error {
	return damagedFile(c.path, format, a...)
}

// pages is bbolt's own check of the pages. Its errors are drained to the
// end, because the check runs in a goroutine on the transaction.
func (c *fileCheck) pages() error {
	var first error
	for err := range c.tx.Check() {
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return c.bad("bbolt check: %v", first)
	}
	fmt.Fprintf(c.w, "%s: pages ok (%d bytes)\n", c.path, c.tx.Size())
	return nil
}

// buckets checks that the buckets every store has are there; the later
// passes read them without looking.
func (c *fileCheck) buckets() error {
	for _, name := range [][]byte{bucketMessages, bucketRecipients, bucketQueues, bucketDead, bucketDeadIndex, bucketRetention} {
		if c.tx.Bucket(name) == nil {
			return c.bad("no %q bucket", name)
		}
	}
	return nil
}

// messages checks that every message record decodes and sits at the key of
// the (from, id) it names.
func (c *fileCheck) messages() error {
	n, err := countEach(c.tx.Bucket(bucketMessages), func(k, v []byte) error {
		var rec messageRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return c.bad("message record %s: %v", printable(k), err)
		}
		if !bytes.Equal(k, pairKey(rec.From, rec.ID)) {
			return c.bad("message record %s names %s/%s", printable(k), rec.From, rec.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.w, "messages: %d records ok\n", n)
	return nil
}

// queues checks every recipient's queue in turn.
func (c *fileCheck) queues() error {
	recipients, deliveries := 0, 0
	queues := c.tx.Bucket(bucketQueues)
	err := queues.ForEachBucket(func(name []byte) error {
		recipients++
		count, err := c.queue(name, queues.Bucket(name))
		deliveries += count
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.w, "queues: %d recipients, %d deliveries ok\n", recipients, deliveries)
	return nil
}

// queue checks one recipient's queue: its deliveries against its index,
// its index against its deliveries, and its depth against their number,
// which it returns.
func (c *fileCheck) queue(name []byte, q *bbolt.Bucket) (int, error) {
	idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
	if idx == nil || dlv == nil {
		return 0, c.bad("queue %s: index or deliveries missing", printable(name))
	}
	count, err := c.queueDeliveries(name, idx, dlv)
	if err != nil {
		return 0, err
	}
	if err := c.queueIndex(name, idx, dlv); err != nil {
		return 0, err
	}
	if d := getUint64(q.Get(keyDepth)); d != uint64(count) {
		return 0, c.bad("queue %s: depth %d, %d deliveries", printable(name), d, count)
	}
	return count, nil
}

// queueDeliveries checks that every delivery record of the queue decodes
// and has its index entry, and counts them.
func (c *fileCheck) queueDeliveries(name []byte, idx, dlv *bbolt.Bucket) (int, error) {
	return countEach(dlv, func(id, v []byte) error {
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return c.bad("delivery record %s/%s: %v", printable(name), printable(id), err)
		}
		if !bytes.Equal(idx.Get(indexKey(r.visible, r.seq)), id) {
			return c.bad("delivery %s/%s: its index entry is missing", printable(name), printable(id))
		}
		return nil
	})
}

// queueIndex checks that every index entry of the queue is a well-formed
// key pointing at a delivery record.
func (c *fileCheck) queueIndex(name []byte, idx, dlv *bbolt.Bucket) error {
	return idx.ForEach(func(k, id []byte) error {
		if _, ok := indexTime(k); !ok {
			return c.bad("queue %s: index key %x", printable(name), k)
		}
		if dlv.Get(id) == nil {
			return c.bad("queue %s: index entry for missing delivery %s", printable(name), printable(id))
		}
		return nil
	})
}

// deadLetters checks that every dead letter decodes and has its index
// entry.
func (c *fileCheck) deadLetters() error {
	dead, deadIdx := c.tx.Bucket(bucketDead), c.tx.Bucket(bucketDeadIndex)
	n, err := countEach(dead, func(k, v []byte) error {
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return c.bad("dead letter %s: %v", printable(k), err)
		}
		if !bytes.Equal(deadIdx.Get(indexKey(r.visible, r.seq)), k) {
			return c.bad("dead letter %s: its index entry is missing", printable(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.w, "dead letters: %d ok\n", n)
	return nil
}

// retention checks that every key of the retention index is a time
// followed by a message key.
func (c *fileCheck) retention() error {
	n, err := countEach(c.tx.Bucket(bucketRetention), func(k, _ []byte) error {
		if _, ok := keyTime(k); !ok || len(k) == 12 {
			return c.bad("retention index key %x", k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.w, "retention: %d messages due some day ok\n", n)
	return nil
}

// chains checks every audit chain kept in the file, when there are any.
func (c *fileCheck) chains() error {
	root := c.tx.Bucket(bucketChains)
	if root == nil {
		return nil
	}
	return root.ForEachBucket(func(replica []byte) error {
		return c.chain(replica, root.Bucket(replica))
	})
}

// chain checks that every entry of one audit chain decodes and that there
// are as many as its head says.
func (c *fileCheck) chain(replica []byte, chain *bbolt.Bucket) error {
	count, _ := readHead(chain)
	es := chain.Bucket(bucketEntries)
	n := 0
	if es != nil {
		var err error
		n, err = countEach(es, func(k, v []byte) error {
			var e audit.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return c.bad("audit chain %s: entry %x does not decode: %v", printable(replica), k, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if uint64(n) != count {
		return c.bad("audit chain %s: head says %d entries, %d stored", printable(replica), count, n)
	}
	cps := 0
	if b := chain.Bucket(bucketCheckpoints); b != nil {
		var err error
		cps, err = countEach(b, func(k, v []byte) error {
			var cp audit.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return c.bad("audit chain %s: checkpoint %x does not decode: %v", printable(replica), k, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(c.w, "audit chain %s: %d entries read, %d checkpoints read\n", printable(replica), n, cps)
	return nil
}

// quarantine says how many records earlier runs moved aside; they are
// not checked.
func (c *fileCheck) quarantine() {
	n := 0
	if qb := c.tx.Bucket(bucketQuarantine); qb != nil {
		n = qb.Stats().KeyN
	}
	fmt.Fprintf(c.w, "quarantine: %d records moved aside earlier\n", n)
}

// countEach runs check on every key and value of b, in order, and returns
// how many passed before the first that did not.
func countEach(b *bbolt.Bucket, check func(k, v []byte) error) (int, error) {
	n := 0
	err := b.ForEach(func(k, v []byte) error {
		if err := check(k, v); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
