// Package audit is the gateway's append-only, hash-chained record of every
// decision (acceptance, denial, delivery, dead letter, policy change, purge,
// forgotten message, withdrawn consent).
//
// Each replica of the gateway keeps its own chain. Entry n of a chain names
// the hash of entry n-1 (Prev) and its own hash is
//
//	Hash = hex(SHA-256(Prev || canonical JSON of the entry without Hash))
//
// where the canonical JSON is encoding/json's output of Entry with Hash
// empty: the fields in declared order, empty ones left out, Time in UTC
// RFC 3339 with nanoseconds. Entry 1 has Prev "". The gateway signs a
// Checkpoint (count and head hash, a compact JWS) at a regular interval and
// at shutdown, so that rewriting the chain, even with every hash recomputed,
// no longer matches a signed head.
//
// Entries carry metadata, rule ids, field paths and digests only, never
// personal data: the subject appears only as a keyed hash (SubjectHash), so
// that one subject's entries can be found by whoever holds the key, and by
// nobody else (DOMAIN.md R13: the audit log keeps metadata and digests only).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kinds of entries.
const (
	KindAccepted      = "accepted"
	KindDenied        = "denied"
	KindDelivered     = "delivered"
	KindDeadLettered  = "dead_lettered"
	KindPolicyChanged = "policy_changed"
	KindPolicyRefused = "policy_refused"
	KindPurged        = "purged"
	// KindForgotten: the store deleted a message's metadata (its record,
	// which was also its replay reservation and the status GET
	// /v1/messages/{id} reads, and its indexes) once both its exp and its
	// retention period had passed (PROTOCOL §6, DOMAIN R13). The entry
	// names the message and its decision (ids only, as a purge's); the
	// message's earlier entries stay in the chain.
	KindForgotten        = "forgotten"
	KindConsentWithdrawn = "consent_withdrawn"
	// KindRegistryReloaded and KindRegistryRefused: the trust registry in
	// force changed, or an edit of it was refused (PayloadSHA256: the
	// digest of the registry's files).
	KindRegistryReloaded = "registry_reloaded"
	KindRegistryRefused  = "registry_refused"

	// The entries of a participant's edge (xborder edge, gateway/edge):
	// what left and what arrived, at home. KindAccepted and KindDenied
	// (an outbound policy's denial) are shared with the hub.
	KindQueued      = "queued"
	KindSent        = "sent"
	KindRefused     = "refused"
	KindExpired     = "expired"
	KindReceived    = "received"
	KindHandedOver  = "handed_over"
	KindQuarantined = "quarantined"
)

var kinds = map[string]bool{
	KindAccepted: true, KindDenied: true, KindDelivered: true, KindDeadLettered: true,
	KindPolicyChanged: true, KindPolicyRefused: true, KindPurged: true, KindForgotten: true, KindConsentWithdrawn: true,
	KindRegistryReloaded: true, KindRegistryRefused: true,
	KindQueued: true, KindSent: true, KindRefused: true, KindExpired: true, KindReceived: true, KindHandedOver: true, KindQuarantined: true,
}

// Entry is one audited event. Field order is part of the hash: do not
// reorder, and add new fields only at the end before Prev, with omitempty.
type Entry struct {
	Replica string    `json:"replica"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`

	MessageID     string `json:"message_id,omitempty"`
	DecisionID    string `json:"decision_id,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
	From          string `json:"from,omitempty"`
	To            string `json:"to,omitempty"`
	Purpose       string `json:"purpose,omitempty"`
	Type          string `json:"type,omitempty"`

	// Rules are the rule ids of the decision (reasons).
	Rules []string `json:"rules,omitempty"`
	// Redacted are the field paths the policy removed.
	Redacted []string `json:"redacted,omitempty"`
	// Categories are the field paths under subject and record that reached
	// the recipient ("subject.names", "record.health"): paths, never values.
	Categories []string `json:"categories,omitempty"`
	// PayloadSHA256 is the hex digest of the payload concerned.
	PayloadSHA256 string `json:"payload_sha256,omitempty"`
	// SubjectHash is Log.SubjectHash(subject.ref), "" when none.
	SubjectHash string `json:"subject_hash,omitempty"`
	// Detail says why a policy version was refused (compiler or test
	// messages: file, rule and field names, never message content).
	Detail string `json:"detail,omitempty"`
	// ReappliedAt is set on an entry appended again after a failover of
	// the shared store erased its first append (the gateway's journal put
	// its change back): Time is still the original event's.
	ReappliedAt time.Time `json:"reapplied_at,omitzero"`

	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// MaxDetail bounds Entry.Detail.
const MaxDetail = 2000

// Checkpoint is a signed statement of a chain's length and head.
type Checkpoint struct {
	Replica string    `json:"replica"`
	Count   uint64    `json:"count"`
	Head    string    `json:"head,omitempty"`
	Time    time.Time `json:"time"`
	// Export marks the checkpoint an export ends with; it is not stored.
	Export bool   `json:"export,omitempty"`
	KID    string `json:"kid"`
	// Signature is a compact JWS (typ TypCheckpoint) over the JSON of
	// checkpointClaims.
	Signature string `json:"signature"`
}

// TypCheckpoint is the JWS typ of a checkpoint signature.
const TypCheckpoint = "xborder-audit-checkpoint+jws"

// checkpointClaims is what a checkpoint signature covers.
type checkpointClaims struct {
	Replica string    `json:"replica"`
	Count   uint64    `json:"count"`
	Head    string    `json:"head"`
	Time    time.Time `json:"time"`
	Export  bool      `json:"export,omitempty"`
}

// Backend is append-only storage of chains, one per replica: the gateway's
// store (store.Store), which also appends the entries of its own changes
// (an acceptance, a denial, a delivery's end, a purge, a forgotten message)
// atomically with them.
// Append prepares e (Prepare) and sets Seq, Prev and Hash (Link) atomically
// against the current head of replica's chain.
type Backend interface {
	Append(ctx context.Context, replica string, e Entry) (Entry, error)
	// Entries calls fn for the entries of replica with Seq >= from, in
	// order, until fn returns an error (which Entries returns).
	Entries(ctx context.Context, replica string, from uint64, fn func(Entry) error) error
	Replicas(ctx context.Context) ([]string, error)
	Head(ctx context.Context, replica string) (count uint64, head string, err error)
	PutCheckpoint(ctx context.Context, cp Checkpoint) error
	Checkpoints(ctx context.Context, replica string) ([]Checkpoint, error)
	Close() error
}

// ErrConflict is returned by an append that lost a race for the head.
var ErrConflict = errors.New("audit: head moved")

// Prepare is e as a backend appends it to replica's chain, before it is
// linked: Replica set, Time the caller's or else now, Categories and Redacted
// through CleanPaths, Seq, Prev and Hash cleared. It refuses what must never
// be stored, so that a store checks every entry before its first write.
// Both stores call it for the entries they write with their changes.
func Prepare(e Entry, replica string, now time.Time) (Entry, error) {
	if err := CheckReplica(replica); err != nil {
		return Entry{}, err
	}
	e.Replica = replica
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC().Round(0)
	e.Seq, e.Prev, e.Hash = 0, "", ""
	e.Categories = CleanPaths(e.Categories)
	e.Redacted = CleanPaths(e.Redacted)
	if err := e.check(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// CheckReplica refuses a replica id that cannot name a chain: empty, longer
// than 200 bytes, or with a NUL byte.
func CheckReplica(replica string) error {
	if replica == "" || len(replica) > 200 || strings.ContainsRune(replica, 0) {
		return errors.New("audit: invalid replica id")
	}
	return nil
}

// Link makes e the entry after (count, head): Seq = count+1, Prev = head,
// Time in UTC, Hash computed. Backends call it inside their atomic append.
func (e *Entry) Link(count uint64, head string) error {
	if err := e.check(); err != nil {
		return err
	}
	e.Seq = count + 1
	e.Prev = head
	e.Time = e.Time.UTC().Round(0)
	if !e.ReappliedAt.IsZero() {
		e.ReappliedAt = e.ReappliedAt.UTC().Round(0)
	}
	h, err := e.ComputeHash()
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// ComputeHash returns the hash e should carry (its own Hash ignored).
func (e Entry) ComputeHash() (string, error) {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("audit: hash: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(e.Prev))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// check refuses what must never be stored: an unknown kind, a missing
// replica, a subject hash that is not a hash (a reference in clear), and
// category or redaction paths that are not dotted field paths.
func (e *Entry) check() error {
	if e.Replica == "" || strings.ContainsRune(e.Replica, 0) {
		return errors.New("audit: entry: invalid replica")
	}
	if !kinds[e.Kind] {
		return fmt.Errorf("audit: entry: unknown kind %q", e.Kind)
	}
	if e.Time.IsZero() {
		return errors.New("audit: entry: no time")
	}
	if len(e.Detail) > MaxDetail {
		return fmt.Errorf("audit: entry: detail longer than %d bytes", MaxDetail)
	}
	if e.SubjectHash != "" && !isHex64(e.SubjectHash) {
		return errors.New("audit: entry: subject_hash is not a keyed hash")
	}
	if e.PayloadSHA256 != "" && !isHex64(e.PayloadSHA256) {
		return errors.New("audit: entry: payload_sha256 is not a SHA-256 digest")
	}
	for _, list := range [][]string{e.Categories, e.Redacted} {
		for _, p := range list {
			if !isPath(p) {
				return errors.New("audit: entry: a category or redacted path is not a field path")
			}
		}
	}
	return nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// isPath accepts dotted field paths of lower-case names ("subject.names",
// "record.documents.passport_number"; "*" for a name that was not one), so
// that a value cannot pass as a path.
func isPath(p string) bool {
	if p == "" || len(p) > maxPath {
		return false
	}
	for _, part := range strings.Split(p, ".") {
		if !isName(part) && part != "*" {
			return false
		}
	}
	return true
}

const maxPath = 200

func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// CleanPaths returns paths with every segment that is not a lower-case
// field name replaced by "*": a sender chooses the names of unknown fields,
// and a name could carry personal data. Duplicates are dropped.
func CleanPaths(paths []string) []string {
	if len(paths) == 0 {
		return nil
	}
	out := make([]string, 0, len(paths))
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		parts := strings.Split(p, ".")
		for i, part := range parts {
			if !isName(part) {
				parts[i] = "*"
			}
		}
		c := strings.Join(parts, ".")
		if len(c) > maxPath {
			c = c[:maxPath-2]
			c = c[:strings.LastIndexByte(c, '.')+1] + "*"
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}
