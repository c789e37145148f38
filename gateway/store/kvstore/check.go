package kvstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/kv"
)

// Check reads the whole store and says what it checked on w: every message
// record, every queued delivery with its queue entry and its recipient's
// depth, every dead letter with its index entry, the retention index and
// the audit chains' entries against their heads (their links and
// checkpoints are audit.VerifyLive's, with the gateway's keys). It returns
// the first problem, wrapping store.ErrDamaged. It is `xborder store
// check`, run while the gateway is stopped.
func (s *Store) Check(ctx context.Context, w io.Writer) error {
	c := &checker{w: w}
	err := s.view(ctx, func(r kv.Reader) error {
		c.r = r
		for _, pass := range []func() error{c.messages, c.queues, c.deadLetters, c.retention, c.chains, c.quarantine} {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := pass(); err != nil {
				return err
			}
		}
		return nil
	})
	return s.failed("check", err)
}

type checker struct {
	r kv.Reader
	w io.Writer
}

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", store.ErrDamaged, fmt.Sprintf(format, a...))
}

// count runs check on every key of bucket in order, and returns how many
// passed.
func (c *checker) count(bucket string, check func(k, v []byte) error) (int, error) {
	n := 0
	err := c.r.Scan(bucket, nil, nil, func(k, v []byte) error {
		if err := check(k, v); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

func (c *checker) messages() error {
	n, err := c.count(bMessages, func(k, v []byte) error {
		var rec messageRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return bad("message record %s: %v", printable(k), err)
		}
		if !bytes.Equal(k, pairKey(rec.From, rec.ID)) {
			return bad("message record %s names %s/%s", printable(k), rec.From, rec.ID)
		}
		return nil
	})
	if err == nil {
		fmt.Fprintf(c.w, "messages: %d records ok\n", n)
	}
	return err
}

// queues checks every delivery against its queue entry, every queue entry
// against its delivery, and every recipient's depth against its
// deliveries.
func (c *checker) queues() error {
	perRecipient := map[string]uint64{}
	n, err := c.count(bDeliveries, func(k, v []byte) error {
		recipient, id, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return bad("delivery key %s", printable(k))
		}
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return bad("delivery record %s: %v", printable(k), err)
		}
		got, ok, err := c.r.Get(bQueue, queueKey(string(recipient), r.visible, r.seq))
		if err != nil {
			return err
		}
		if !ok || !bytes.Equal(got, id) {
			return bad("delivery %s: its queue entry is missing", printable(k))
		}
		perRecipient[string(recipient)]++
		return nil
	})
	if err != nil {
		return err
	}
	_, err = c.count(bQueue, func(k, id []byte) error {
		recipient, rest, ok := bytes.Cut(k, []byte{0})
		if _, tok := indexTime(rest); !ok || !tok {
			return bad("queue key %x", k)
		}
		if _, ok, err := c.r.Get(bDeliveries, pairKey(string(recipient), string(id))); err != nil || !ok {
			return errorsOr(err, bad("queue %s: entry for missing delivery %s", printable(recipient), printable(id)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	recipients, err := c.count(bDepth, func(k, v []byte) error {
		if len(v) != 16 {
			return bad("depth of %s: %x", printable(k), v)
		}
		if d := binary.BigEndian.Uint64(v[:8]); d != perRecipient[string(k)] {
			return bad("queue %s: depth %d, %d deliveries", printable(k), d, perRecipient[string(k)])
		}
		delete(perRecipient, string(k))
		return nil
	})
	if err != nil {
		return err
	}
	for r, n := range perRecipient {
		return bad("queue %s: %d deliveries and no depth", printable([]byte(r)), n)
	}
	fmt.Fprintf(c.w, "queues: %d recipients, %d deliveries ok\n", recipients, n)
	return nil
}

func errorsOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func (c *checker) deadLetters() error {
	n, err := c.count(bDead, func(k, v []byte) error {
		var r deliveryRecord
		if err := r.unmarshal(v); err != nil {
			return bad("dead letter %s: %v", printable(k), err)
		}
		got, ok, err := c.r.Get(bDeadIndex, deadKey(k, &r))
		if err != nil {
			return err
		}
		if !ok || !bytes.Equal(got, k) {
			return bad("dead letter %s: its index entry is missing", printable(k))
		}
		return nil
	})
	if err == nil {
		fmt.Fprintf(c.w, "dead letters: %d ok\n", n)
	}
	return err
}

func (c *checker) retention() error {
	n, err := c.count(bRetention, func(k, _ []byte) error {
		if _, ok := keyTime(k); !ok || len(k) == 12 {
			return bad("retention index key %x", k)
		}
		return nil
	})
	if err == nil {
		fmt.Fprintf(c.w, "retention: %d messages due some day ok\n", n)
	}
	return err
}

// chains checks that every entry of every audit chain decodes and that
// there are as many as its head says.
func (c *checker) chains() error {
	_, err := c.count(bHeads, func(replica, v []byte) error {
		if len(v) < 8 {
			return bad("audit chain %s: head %x", printable(replica), v)
		}
		count := binary.BigEndian.Uint64(v[:8])
		n, err := c.decodeAll(bChain, replica, "entry", func(v []byte) error { return json.Unmarshal(v, new(audit.Entry)) })
		if err != nil {
			return err
		}
		if n != count {
			return bad("audit chain %s: head says %d entries, %d stored", printable(replica), count, n)
		}
		cps, err := c.decodeAll(bCheckpoints, replica, "checkpoint", func(v []byte) error { return json.Unmarshal(v, new(audit.Checkpoint)) })
		if err != nil {
			return err
		}
		fmt.Fprintf(c.w, "audit chain %s: %d entries read, %d checkpoints read\n", printable(replica), n, cps)
		return nil
	})
	return err
}

// decodeAll decodes every record of the chain of replica in bucket (what
// names one in an error) and returns how many there are.
func (c *checker) decodeAll(bucket string, replica []byte, what string, decode func([]byte) error) (uint64, error) {
	n := uint64(0)
	err := c.r.Scan(bucket, seqKey(string(replica), 0), append(bytes.Clone(replica), 1), func(k, v []byte) error {
		if err := decode(v); err != nil {
			return bad("audit chain %s: %s %x does not decode: %v", printable(replica), what, k[len(k)-8:], err)
		}
		n++
		return nil
	})
	return n, err
}

func (c *checker) quarantine() error {
	n, err := c.count(bQuarantine, func(_, _ []byte) error { return nil })
	if err == nil {
		fmt.Fprintf(c.w, "quarantine: %d records moved aside earlier\n", n)
	}
	return err
}
