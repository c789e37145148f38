package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
)

// The audit chains live in the store's file, so that a change and its audit
// entry are one transaction and one fsync (audit.Backend):
//
//	chains/<replica>/
//	  entries      seq (8 bytes, big endian) -> entry JSON
//	  checkpoints  bucket sequence (8 bytes)  -> checkpoint JSON
//	  head         count (8 bytes) + head hash (hex)

var _ audit.Backend = (*Store)(nil)

var (
	bucketChains      = []byte("chains")
	bucketEntries     = []byte("entries")
	bucketCheckpoints = []byte("checkpoints")
	keyHead           = []byte("head")
)

// chainPage is how many entries one read transaction returns, so that a long
// export never holds a read transaction (and blocks the file's growth).
const chainPage = 512

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func readHead(chain *bbolt.Bucket) (uint64, string) {
	if chain == nil {
		return 0, ""
	}
	v := chain.Get(keyHead)
	if len(v) < 8 {
		return 0, ""
	}
	return binary.BigEndian.Uint64(v[:8]), string(v[8:])
}

func chainBucket(tx *bbolt.Tx, replica string) *bbolt.Bucket {
	root := tx.Bucket(bucketChains)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(replica))
}

// prepare checks and prepares the entries a change will append to the
// store's own chain, before its transaction: a refused entry fails its
// call alone instead of the batch it would share a commit with.
func (s *Store) prepare(op string, entries []audit.Entry) ([]audit.Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make([]audit.Entry, len(entries))
	now := s.now()
	for i, e := range entries {
		p, err := audit.Prepare(e, s.opts.Replica, now)
		if err != nil {
			return nil, fmt.Errorf("bolt: %s: %w", op, err)
		}
		out[i] = p
	}
	return out, nil
}

// appendEntries runs the fault hook (tests) and links the prepared entries
// to the heads of their chains inside tx: committed with whatever else tx
// writes, or not at all. It may run again for the same entries (a batch
// retried): it depends only on tx.
func (s *Store) appendEntries(tx *bbolt.Tx, op string, entries []audit.Entry) error {
	if s.opts.Fault != nil {
		if err := s.opts.Fault(op); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if _, err := appendEntry(tx, e); err != nil {
			return err
		}
	}
	return nil
}

func appendEntry(tx *bbolt.Tx, e audit.Entry) (audit.Entry, error) {
	root := tx.Bucket(bucketChains)
	if root == nil {
		return audit.Entry{}, errors.New("no audit chains in this file")
	}
	chain, err := root.CreateBucketIfNotExists([]byte(e.Replica))
	if err != nil {
		return audit.Entry{}, err
	}
	entries, err := chain.CreateBucketIfNotExists(bucketEntries)
	if err != nil {
		return audit.Entry{}, err
	}
	// Keys only grow: fill pages instead of splitting them half-empty.
	entries.FillPercent = 0.95
	count, head := readHead(chain)
	if err := e.Link(count, head); err != nil {
		return audit.Entry{}, err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return audit.Entry{}, err
	}
	if err := entries.Put(seqKey(e.Seq), v); err != nil {
		return audit.Entry{}, err
	}
	if err := chain.Put(keyHead, append(seqKey(e.Seq), e.Hash...)); err != nil {
		return audit.Entry{}, err
	}
	return e, nil
}

// Append implements audit.Backend: e alone, for an event that is not a
// change of the store. Appends arriving together share one commit.
func (s *Store) Append(ctx context.Context, replica string, e audit.Entry) (audit.Entry, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, unavailable("append", err)
	}
	p, err := audit.Prepare(e, replica, s.now())
	if err != nil { // before the batch: a refusal would rerun the others
		return audit.Entry{}, fmt.Errorf("bolt: append: %w", err)
	}
	var stored audit.Entry
	err = s.batch(func(tx *bbolt.Tx) (err error) {
		if s.opts.Fault != nil {
			if err := s.opts.Fault("append"); err != nil {
				return err
			}
		}
		stored, err = appendEntry(tx, p)
		return err
	})
	if err != nil {
		return audit.Entry{}, s.failed("append", err)
	}
	return stored, nil
}

// Entries implements audit.Backend.
func (s *Store) Entries(ctx context.Context, replica string, from uint64, fn func(audit.Entry) error) error {
	next := max(from, 1)
	for {
		if err := ctx.Err(); err != nil {
			return unavailable("entries", err)
		}
		page := make([]audit.Entry, 0, chainPage)
		var last uint64 // by key: a tampered seq field must not steer the paging
		err := s.view(func(tx *bbolt.Tx) error {
			chain := chainBucket(tx, replica)
			if chain == nil || chain.Bucket(bucketEntries) == nil {
				return nil
			}
			c := chain.Bucket(bucketEntries).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && len(page) < chainPage; k, v = c.Next() {
				var e audit.Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return damagedFile(s.path, "audit chain %s: entry %d does not decode: %v", replica, binary.BigEndian.Uint64(k), err)
				}
				page = append(page, e)
				last = binary.BigEndian.Uint64(k)
			}
			return nil
		})
		if err != nil {
			return s.failed("entries", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < chainPage {
			return nil
		}
		next = last + 1
	}
}

// Replicas implements audit.Backend: the chains, sorted.
func (s *Store) Replicas(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(func(tx *bbolt.Tx) error {
		root := tx.Bucket(bucketChains)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, s.failed("replicas", err)
	}
	return out, nil
}

// Head implements audit.Backend.
func (s *Store) Head(ctx context.Context, replica string) (count uint64, head string, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		count, head = readHead(chainBucket(tx, replica))
		return nil
	})
	if err != nil {
		return 0, "", s.failed("head", err)
	}
	return count, head, nil
}

// PutCheckpoint implements audit.Backend.
func (s *Store) PutCheckpoint(ctx context.Context, cp audit.Checkpoint) error {
	if err := audit.CheckReplica(cp.Replica); err != nil {
		return fmt.Errorf("bolt: checkpoint: %w", err)
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("bolt: checkpoint: %w", err)
	}
	err = s.update(func(tx *bbolt.Tx) error {
		chain, err := tx.Bucket(bucketChains).CreateBucketIfNotExists([]byte(cp.Replica))
		if err != nil {
			return err
		}
		cps, err := chain.CreateBucketIfNotExists(bucketCheckpoints)
		if err != nil {
			return err
		}
		n, err := cps.NextSequence()
		if err != nil {
			return err
		}
		return cps.Put(seqKey(n), v)
	})
	if err != nil {
		return s.failed("checkpoint", err)
	}
	return nil
}

// Checkpoints implements audit.Backend.
func (s *Store) Checkpoints(ctx context.Context, replica string) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	err := s.view(func(tx *bbolt.Tx) error {
		chain := chainBucket(tx, replica)
		if chain == nil || chain.Bucket(bucketCheckpoints) == nil {
			return nil
		}
		return chain.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			var cp audit.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return damagedFile(s.path, "audit chain %s: checkpoint %x does not decode: %v", replica, k, err)
			}
			out = append(out, cp)
			return nil
		})
	})
	if err != nil {
		return nil, s.failed("checkpoints", err)
	}
	return out, nil
}
