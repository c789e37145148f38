package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/xborder/xborder/gateway/envelope"
)

// line is one line of an export: exactly one of the two is set.
type line struct {
	Entry      *Entry      `json:"entry,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

var errStop = errors.New("audit: stop")

// Export writes every replica's chain as JSON lines, {"entry":…} and
// {"checkpoint":…}, each stored checkpoint right after the entry it covers,
// and ends each replica with a checkpoint of its head signed now by signer
// (export: true). Entries appended while exporting are left for the next
// export. The backend is only read.
func Export(ctx context.Context, b Backend, w io.Writer, signer *envelope.PrivateKey) error {
	replicas, err := b.Replicas(ctx)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	for _, r := range replicas {
		now := time.Now() // before the head: what follows it is newer
		count, head, err := b.Head(ctx, r)
		if err != nil {
			return err
		}
		stored, err := b.Checkpoints(ctx, r)
		if err != nil {
			return err
		}
		sort.SliceStable(stored, func(i, j int) bool { return stored[i].Count < stored[j].Count })
		next := 0
		flush := func(upTo uint64) error {
			for ; next < len(stored) && stored[next].Count <= upTo; next++ {
				if err := enc.Encode(line{Checkpoint: &stored[next]}); err != nil {
					return err
				}
			}
			return nil
		}
		if err := flush(0); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
		err = b.Entries(ctx, r, 1, func(e Entry) error {
			if e.Seq > count {
				return errStop
			}
			if err := enc.Encode(line{Entry: &e}); err != nil {
				return err
			}
			return flush(e.Seq)
		})
		if err != nil && !errors.Is(err, errStop) {
			return fmt.Errorf("audit: export: %w", err)
		}
		cp, err := SignCheckpoint(signer, r, count, head, now, true)
		if err != nil {
			return err
		}
		if err := enc.Encode(line{Checkpoint: &cp}); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	return nil
}

// maxLine bounds one line of an export.
const maxLine = 1 << 20

// VerifyExport checks an export offline with the gateway's public keys:
// every chain as Verify does, and that each replica ends with an export
// checkpoint covering all its entries, so that an edited, deleted,
// reordered, inserted or cut-off entry is found.
func VerifyExport(r io.Reader, keys envelope.KeyFunc) (Summary, error) {
	v := NewVerifier(keys)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l line
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return Summary{}, fmt.Errorf("audit: export line %d: %w", n, err)
		}
		switch {
		case l.Entry != nil && l.Checkpoint == nil:
			if err := v.Entry(*l.Entry); err != nil {
				return Summary{}, err
			}
		case l.Checkpoint != nil && l.Entry == nil:
			if err := v.Checkpoint(*l.Checkpoint); err != nil {
				return Summary{}, err
			}
		default:
			return Summary{}, fmt.Errorf("audit: export line %d: neither one entry nor one checkpoint", n)
		}
	}
	if err := sc.Err(); err != nil {
		return Summary{}, fmt.Errorf("audit: export: %w", err)
	}
	s, err := v.Finish()
	if err != nil {
		return s, err
	}
	if len(s.Replicas) == 0 {
		return s, errors.New("audit: export: empty")
	}
	for _, r := range s.Replicas {
		if !r.Last.Export || r.Last.Count != r.Count {
			return s, &Error{Replica: r.Replica, Seq: r.Count + 1, Checkpoint: true,
				Reason: "the export does not end with an export checkpoint covering every entry (cut off)"}
		}
	}
	return s, nil
}

// VerifyLive checks every chain in b: entries, stored checkpoints, and that
// no stored checkpoint covers more entries than the chain holds.
func VerifyLive(ctx context.Context, b Backend, keys envelope.KeyFunc) (Summary, error) {
	replicas, err := b.Replicas(ctx)
	if err != nil {
		return Summary{}, err
	}
	v := NewVerifier(keys)
	for _, r := range replicas {
		count, head, err := b.Head(ctx, r)
		if err != nil {
			return Summary{}, err
		}
		cps, err := b.Checkpoints(ctx, r)
		if err != nil {
			return Summary{}, err
		}
		for _, cp := range cps {
			if cp.Replica != r {
				return Summary{}, &Error{Replica: r, Seq: cp.Count, Checkpoint: true, Reason: "stored under another replica"}
			}
			if err := v.Checkpoint(cp); err != nil {
				return Summary{}, err
			}
		}
		err = b.Entries(ctx, r, 1, func(e Entry) error {
			if e.Replica != r {
				return &Error{Replica: r, Seq: e.Seq, Reason: "entry of another replica"}
			}
			return v.Entry(e)
		})
		if err != nil {
			return Summary{}, err
		}
		// The head the backend keeps must be the chain's; entries appended
		// while reading move it, so read it again.
		after, afterHead, err := b.Head(ctx, r)
		if err != nil {
			return Summary{}, err
		}
		got := v.chain(r)
		n := uint64(len(got.hashes))
		switch {
		case n < count:
			return Summary{}, &Error{Replica: r, Seq: n + 1,
				Reason: fmt.Sprintf("the stored head is entry %d, the chain ends at %d (entries removed)", count, n)}
		case n > after:
			return Summary{}, &Error{Replica: r, Seq: after + 1,
				Reason: fmt.Sprintf("the chain goes on past the stored head %d (entries added outside the log)", after)}
		case n == after && got.head != afterHead:
			return Summary{}, &Error{Replica: r, Seq: n, Reason: "the stored head differs from the chain's"}
		case n == count && got.head != head:
			return Summary{}, &Error{Replica: r, Seq: n, Reason: "the stored head differs from the chain's"}
		}
	}
	return v.Finish()
}

// CompareLive checks a verified export against the live log: every chain
// the live log held at export time is in the export, whole (nothing the
// live log had at export time is missing), and the live chain still holds
// the exported head (neither log was rewritten or cut since).
func CompareLive(ctx context.Context, s Summary, b Backend) error {
	replicas, err := b.Replicas(ctx)
	if err != nil {
		return err
	}
	for _, r := range replicas {
		count, _, err := b.Head(ctx, r)
		if err != nil {
			return err
		}
		exp, ok := s.Replica(r)
		if !ok {
			// Missing chain: fine only if it began after every export checkpoint.
			var first *Entry
			err := b.Entries(ctx, r, 1, func(e Entry) error { first = &e; return errStop })
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
			if first != nil && appended(*first).Before(s.exported().Add(-compareGrace)) {
				return &Error{Replica: r, Seq: 1, Reason: "the live chain is missing from the export (cut off)"}
			}
			continue
		}
		if count < exp.Count {
			return &Error{Replica: r, Seq: count + 1,
				Reason: fmt.Sprintf("the live chain has %d entries, the export %d (live log cut)", count, exp.Count)}
		}
		var at, after *Entry
		err = b.Entries(ctx, r, max(exp.Count, 1), func(e Entry) error {
			if e.Seq == exp.Count {
				at = &e
				return nil
			}
			after = &e
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if exp.Count > 0 && (at == nil || at.Hash != exp.Head) {
			return &Error{Replica: r, Seq: exp.Count, Reason: "the live entry differs from the export's head (rewritten)"}
		}
		if after != nil && appended(*after).Before(exp.Last.Time.Add(-compareGrace)) {
			return &Error{Replica: r, Seq: after.Seq,
				Reason: "the live entry predates the export's checkpoint but is not in the export (cut off)"}
		}
	}
	return nil
}

// appended is when e was appended: its event's time, or for an entry
// appended again after a failover erased it, that time.
func appended(e Entry) time.Time {
	if !e.ReappliedAt.IsZero() {
		return e.ReappliedAt
	}
	return e.Time
}

// compareGrace covers an entry stamped just before an export read the head
// but stored just after.
const compareGrace = 2 * time.Second

// exported is the earliest export checkpoint time in the summary.
func (s Summary) exported() time.Time {
	var t time.Time
	for _, r := range s.Replicas {
		if r.Last.Export && (t.IsZero() || r.Last.Time.Before(t)) {
			t = r.Last.Time
		}
	}
	return t
}

// Subject returns the entries about one subject (by its keyed hash) across
// every replica, oldest first. It reads the whole log.
func Subject(ctx context.Context, b Backend, subjectHash string) ([]Entry, error) {
	if !isHex64(subjectHash) {
		return nil, errors.New("audit: subject: not a subject hash")
	}
	replicas, err := b.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, r := range replicas {
		err := b.Entries(ctx, r, 1, func(e Entry) error {
			if e.SubjectHash == subjectHash {
				out = append(out, e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
