package kvstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store/kv"
)

// The audit chains live in the store, so that a change and its audit entry
// are one commit (audit.Backend). A chain's head is one key (heads), read
// and written by every change with an entry: changes of one replica
// arriving together share a batch, which reads it once.

var _ audit.Backend = (*Store)(nil)

// chainPage is how many entries one read transaction returns.
const chainPage = 512

func seqKey(replica string, n uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(replica), 0), n)
}

func readHead(r kv.Reader, replica string) (uint64, string, error) {
	v, _, err := r.Get(bHeads, []byte(replica))
	if err != nil || len(v) < 8 {
		return 0, "", err
	}
	return binary.BigEndian.Uint64(v[:8]), string(v[8:]), nil
}

// headReads adds the heads of the chains entries will be appended to
// (for changeReading).
func (s *Store) headReads(reads []kv.Key, entries []audit.Entry) []kv.Key {
	for i, e := range entries {
		if i == 0 || e.Replica != entries[i-1].Replica {
			reads = append(reads, kv.Key{Bucket: bHeads, Key: []byte(e.Replica)})
		}
	}
	return reads
}

// appendEntries runs the fault hook (tests) and links the prepared entries
// to the head of their chain, in the change's commit.
func (t *txn) appendEntries(op string, entries []audit.Entry) error {
	if err := t.fault(op); err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := t.appendEntry(e); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) appendEntry(e audit.Entry) (audit.Entry, error) {
	count, head, err := readHead(t.tx, e.Replica)
	if err != nil {
		return audit.Entry{}, err
	}
	if !t.redoAt.IsZero() { // made again by the journal: the original time, marked
		if e.Time.After(t.redoAt) {
			e.Time = t.redoAt
		}
		e.ReappliedAt = t.s.now()
	}
	if err := e.Link(count, head); err != nil {
		return audit.Entry{}, err
	}
	v, err := json.Marshal(e)
	if err != nil {
		return audit.Entry{}, err
	}
	if err := t.put(bChain, seqKey(e.Replica, e.Seq), v); err != nil {
		return audit.Entry{}, err
	}
	return e, t.put(bHeads, []byte(e.Replica), append(binary.BigEndian.AppendUint64(nil, e.Seq), e.Hash...))
}

// Append implements audit.Backend: e alone, for an event that is not a
// change of the store.
func (s *Store) Append(ctx context.Context, replica string, e audit.Entry) (audit.Entry, error) {
	if err := ctx.Err(); err != nil {
		return audit.Entry{}, s.unavailable("append", err)
	}
	p, err := audit.Prepare(e, replica, s.now())
	if err != nil {
		return audit.Entry{}, fmt.Errorf("%s: append: %w", s.opts.Name, err)
	}
	var stored audit.Entry
	err = s.changeJ(ctx, "append", appendArgs{Replica: replica, E: p}, func(t *txn) (err error) {
		if err := t.fault("append"); err != nil {
			return err
		}
		stored, err = t.appendEntry(p)
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
	end := append([]byte(replica), 1)
	for {
		if err := ctx.Err(); err != nil {
			return s.unavailable("entries", err)
		}
		page := make([]audit.Entry, 0, chainPage)
		var last uint64 // by key: a tampered seq field must not steer the paging
		err := s.view(ctx, func(r kv.Reader) error {
			page = page[:0]
			return r.Scan(bChain, seqKey(replica, next), end, func(k, v []byte) error {
				if len(page) == chainPage {
					return kv.Stop
				}
				n := binary.BigEndian.Uint64(k[len(k)-8:])
				var e audit.Entry
				if err := json.Unmarshal(v, &e); err != nil {
					return bad("audit chain %s: entry %d does not decode: %v", replica, n, err)
				}
				page = append(page, e)
				last = n
				return nil
			})
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
	err := s.view(ctx, func(r kv.Reader) error {
		out = out[:0]
		return r.Scan(bHeads, nil, nil, func(k, _ []byte) error {
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
	err = s.view(ctx, func(r kv.Reader) error {
		if audit.CheckReplica(replica) != nil {
			return nil
		}
		count, head, err = readHead(r, replica)
		return err
	})
	if err != nil {
		return 0, "", s.failed("head", err)
	}
	return count, head, nil
}

// PutCheckpoint implements audit.Backend.
func (s *Store) PutCheckpoint(ctx context.Context, cp audit.Checkpoint) error {
	if err := audit.CheckReplica(cp.Replica); err != nil {
		return fmt.Errorf("%s: checkpoint: %w", s.opts.Name, err)
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("%s: checkpoint: %w", s.opts.Name, err)
	}
	err = s.change(ctx, "checkpoint", func(t *txn) error {
		var n uint64
		err := t.tx.Scan(bCheckpoints, seqKey(cp.Replica, 0), append([]byte(cp.Replica), 1), func(k, _ []byte) error {
			n = binary.BigEndian.Uint64(k[len(k)-8:])
			return nil
		})
		if err != nil {
			return err
		}
		return t.put(bCheckpoints, seqKey(cp.Replica, n+1), v)
	})
	return s.failed("checkpoint", err)
}

// Checkpoints implements audit.Backend.
func (s *Store) Checkpoints(ctx context.Context, replica string) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	err := s.view(ctx, func(r kv.Reader) error {
		out = out[:0]
		if audit.CheckReplica(replica) != nil {
			return nil
		}
		return r.Scan(bCheckpoints, seqKey(replica, 0), append([]byte(replica), 1), func(k, v []byte) error {
			var cp audit.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return bad("audit chain %s: checkpoint %x does not decode: %v", replica, k[len(k)-8:], err)
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
