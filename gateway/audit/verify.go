package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/xborder/xborder/gateway/envelope"
)

// Error names the first place a chain is broken: an entry (by the sequence
// number due at that place) or a checkpoint (by its count).
type Error struct {
	Replica    string
	Seq        uint64
	Checkpoint bool
	Reason     string
}

func (e *Error) Error() string {
	if e.Checkpoint {
		return fmt.Sprintf("audit: replica %q: checkpoint at %d: %s", e.Replica, e.Seq, e.Reason)
	}
	return fmt.Sprintf("audit: replica %q: entry %d: %s", e.Replica, e.Seq, e.Reason)
}

// Summary describes verified chains.
type Summary struct {
	Replicas []ReplicaSummary
}

// ReplicaSummary is one verified chain.
type ReplicaSummary struct {
	Replica     string
	Count       uint64
	Head        string
	Checkpoints int
	// Last is the checkpoint seen last (in input order); zero if none.
	Last Checkpoint
}

// Replica returns the summary of one replica.
func (s Summary) Replica(id string) (ReplicaSummary, bool) {
	for _, r := range s.Replicas {
		if r.Replica == id {
			return r, true
		}
	}
	return ReplicaSummary{}, false
}

// Verifier checks chains entry by entry, in order, keeping 32 bytes per
// entry. Checkpoints may come before, between or after the entries they
// cover.
type Verifier struct {
	keys   envelope.KeyFunc
	chains map[string]*chainState
}

type chainState struct {
	hashes  [][32]byte
	head    string
	cps     int
	last    Checkpoint
	pending []Checkpoint // covering entries not seen yet
}

// NewVerifier checks checkpoint signatures with keys.
func NewVerifier(keys envelope.KeyFunc) *Verifier {
	return &Verifier{keys: keys, chains: map[string]*chainState{}}
}

func (v *Verifier) chain(replica string) *chainState {
	c := v.chains[replica]
	if c == nil {
		c = &chainState{}
		v.chains[replica] = c
	}
	return c
}

// Entry checks the next entry of its replica's chain.
func (v *Verifier) Entry(e Entry) error {
	c := v.chain(e.Replica)
	want := uint64(len(c.hashes)) + 1
	bad := func(format string, a ...any) error {
		return &Error{Replica: e.Replica, Seq: want, Reason: fmt.Sprintf(format, a...)}
	}
	if e.Seq != want {
		return bad("found entry %d here (entries deleted, reordered or inserted)", e.Seq)
	}
	if e.Prev != c.head {
		return bad("prev does not match the hash of entry %d", want-1)
	}
	h, err := e.ComputeHash()
	if err != nil {
		return bad("%v", err)
	}
	if h != e.Hash {
		return bad("hash does not match the content (entry edited)")
	}
	var raw [32]byte
	if n, err := hex.Decode(raw[:], []byte(h)); err != nil || n != 32 {
		return bad("malformed hash")
	}
	c.hashes = append(c.hashes, raw)
	c.head = h
	return nil
}

// Checkpoint checks a checkpoint's signature now, and that it matches its
// chain at its count now or, for entries not seen yet, in Finish.
func (v *Verifier) Checkpoint(cp Checkpoint) error {
	if err := verifySignature(cp, v.keys); err != nil {
		return err
	}
	c := v.chain(cp.Replica)
	c.cps++
	c.last = cp
	if cp.Count > uint64(len(c.hashes)) {
		c.pending = append(c.pending, cp)
		return nil
	}
	return c.match(cp)
}

func (c *chainState) match(cp Checkpoint) error {
	if cp.Count > uint64(len(c.hashes)) {
		return &Error{Replica: cp.Replica, Seq: cp.Count, Checkpoint: true,
			Reason: fmt.Sprintf("signed for %d entries, the chain has %d (entries removed from the end)", cp.Count, len(c.hashes))}
	}
	want := ""
	if cp.Count > 0 {
		want = hex.EncodeToString(c.hashes[cp.Count-1][:])
	}
	if cp.Head != want {
		return &Error{Replica: cp.Replica, Seq: cp.Count, Checkpoint: true,
			Reason: "signed head differs from the chain (entries rewritten)"}
	}
	return nil
}

// Finish checks the checkpoints still pending and summarises the chains,
// sorted by replica.
func (v *Verifier) Finish() (Summary, error) {
	var s Summary
	ids := make([]string, 0, len(v.chains))
	for id := range v.chains {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := v.chains[id]
		sort.Slice(c.pending, func(i, j int) bool { return c.pending[i].Count < c.pending[j].Count })
		for _, cp := range c.pending {
			if err := c.match(cp); err != nil {
				return s, err
			}
		}
		s.Replicas = append(s.Replicas, ReplicaSummary{Replica: id, Count: uint64(len(c.hashes)),
			Head: c.head, Checkpoints: c.cps, Last: c.last})
	}
	return s, nil
}

// verifySignature checks that the JWS is by a known key and says exactly
// what the checkpoint's fields say.
func verifySignature(cp Checkpoint, keys envelope.KeyFunc) error {
	bad := func(reason string) error {
		return &Error{Replica: cp.Replica, Seq: cp.Count, Checkpoint: true, Reason: reason}
	}
	payload, kid, err := envelope.Verify([]byte(cp.Signature), TypCheckpoint, keys, envelope.Profile{AllowEdDSA: true})
	if err != nil {
		return bad("signature invalid or by an unknown key: " + err.Error())
	}
	if kid != cp.KID {
		return bad("kid differs from the signature's")
	}
	want, err := json.Marshal(checkpointClaims{Replica: cp.Replica, Count: cp.Count, Head: cp.Head, Time: cp.Time.UTC(), Export: cp.Export})
	if err != nil {
		return bad(err.Error())
	}
	var got checkpointClaims
	if err := json.Unmarshal(payload, &got); err != nil {
		return bad("signed claims unreadable")
	}
	norm, _ := json.Marshal(got)
	if !bytes.Equal(norm, want) {
		return bad("fields differ from the signed claims")
	}
	return nil
}

// Verify checks entries (each replica's in chain order) and checkpoints:
// sequence, links, hashes, signatures, and that every checkpoint matches
// its chain at its count. The error is an *Error naming the first break.
func Verify(entries []Entry, cps []Checkpoint, keys envelope.KeyFunc) (Summary, error) {
	v := NewVerifier(keys)
	for _, cp := range cps {
		if err := v.Checkpoint(cp); err != nil {
			return Summary{}, err
		}
	}
	for _, e := range entries {
		if err := v.Entry(e); err != nil {
			return Summary{}, err
		}
	}
	return v.Finish()
}
