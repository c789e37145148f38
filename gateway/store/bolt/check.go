package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"

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
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", store.ErrDamaged, s.path, fmt.Sprintf(format, a...))
	}
	if err := checkFile(s.path); err != nil {
		return bad("%v", err)
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the check runs in a goroutine on tx
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return bad("bbolt check: %v", first)
		}
		fmt.Fprintf(w, "%s: pages ok (%d bytes)\n", s.path, tx.Size())
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketMessages, bucketRecipients, bucketQueues, bucketDead, bucketDeadIndex, bucketRetention} {
			if tx.Bucket(name) == nil {
				return bad("no %q bucket", name)
			}
		}

		n := 0
		err := tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			var rec messageRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return bad("message record %s: %v", printable(k), err)
			}
			if !bytes.Equal(k, pairKey(rec.From, rec.ID)) {
				return bad("message record %s names %s/%s", printable(k), rec.From, rec.ID)
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "messages: %d records ok\n", n)

		recipients, deliveries := 0, 0
		queues := tx.Bucket(bucketQueues)
		err = queues.ForEachBucket(func(name []byte) error {
			recipients++
			q := queues.Bucket(name)
			idx, dlv := q.Bucket(bucketIndex), q.Bucket(bucketDeliveries)
			if idx == nil || dlv == nil {
				return bad("queue %s: index or deliveries missing", printable(name))
			}
			count := 0
			err := dlv.ForEach(func(id, v []byte) error {
				var r deliveryRecord
				if err := r.unmarshal(v); err != nil {
					return bad("delivery record %s/%s: %v", printable(name), printable(id), err)
				}
				if !bytes.Equal(idx.Get(indexKey(r.visible, r.seq)), id) {
					return bad("delivery %s/%s: its index entry is missing", printable(name), printable(id))
				}
				count++
				return nil
			})
			if err != nil {
				return err
			}
			err = idx.ForEach(func(k, id []byte) error {
				if _, ok := indexTime(k); !ok {
					return bad("queue %s: index key %x", printable(name), k)
				}
				if dlv.Get(id) == nil {
					return bad("queue %s: index entry for missing delivery %s", printable(name), printable(id))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if d := getUint64(q.Get(keyDepth)); d != uint64(count) {
				return bad("queue %s: depth %d, %d deliveries", printable(name), d, count)
			}
			deliveries += count
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "queues: %d recipients, %d deliveries ok\n", recipients, deliveries)

		n = 0
		dead, deadIdx := tx.Bucket(bucketDead), tx.Bucket(bucketDeadIndex)
		err = dead.ForEach(func(k, v []byte) error {
			var r deliveryRecord
			if err := r.unmarshal(v); err != nil {
				return bad("dead letter %s: %v", printable(k), err)
			}
			if !bytes.Equal(deadIdx.Get(indexKey(r.visible, r.seq)), k) {
				return bad("dead letter %s: its index entry is missing", printable(k))
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "dead letters: %d ok\n", n)

		n = 0
		err = tx.Bucket(bucketRetention).ForEach(func(k, _ []byte) error {
			if _, ok := keyTime(k); !ok || len(k) == 12 {
				return bad("retention index key %x", k)
			}
			n++
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "retention: %d messages due some day ok\n", n)

		if root := tx.Bucket(bucketChains); root != nil {
			err = root.ForEachBucket(func(replica []byte) error {
				chain := root.Bucket(replica)
				count, _ := readHead(chain)
				es := chain.Bucket(bucketEntries)
				n := 0
				if es != nil {
					err := es.ForEach(func(k, v []byte) error {
						if !json.Valid(v) {
							return bad("audit chain %s: entry %x does not decode", printable(replica), k)
						}
						n++
						return nil
					})
					if err != nil {
						return err
					}
				}
				if uint64(n) != count {
					return bad("audit chain %s: head says %d entries, %d stored", printable(replica), count, n)
				}
				fmt.Fprintf(w, "audit chain %s: %d entries read\n", printable(replica), n)
				return nil
			})
			if err != nil {
				return err
			}
		}
		n = 0
		if qb := tx.Bucket(bucketQuarantine); qb != nil {
			n = qb.Stats().KeyN
		}
		fmt.Fprintf(w, "quarantine: %d records moved aside earlier\n", n)
		return nil
	})
}
