package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// exportFixture is a bolt log with two replicas, stored checkpoints, and
// its export as lines.
type exportFixture struct {
	path  string
	b     *bolt.Store
	key   *envelope.PrivateKey
	lines []string
}

func newExportFixture(t *testing.T) *exportFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xborder.db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	key := signingKey(t)
	ctx := context.Background()
	clk := newClock(time.Now().Add(-time.Hour)) // entries an hour old
	g1 := newLog(t, b, "gw-1", key, clk.Now)
	g2 := newLog(t, b, "gw-2", key, clk.Now)
	record(t, g1, 3, "ref-1")
	if _, err := g1.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, g1, 3, "ref-2")
	record(t, g2, 2, "ref-3")
	if _, err := g2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := audit.Export(ctx, b, &buf, key); err != nil {
		t.Fatal(err)
	}
	return &exportFixture{path: path, b: b, key: key,
		lines: strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")}
}

// find returns the index of the line holding the entry (seq > 0) or the
// checkpoint (seq 0: the replica's last one) of replica.
func find(t *testing.T, lines []string, replica string, seq uint64) int {
	t.Helper()
	at := -1
	for i, l := range lines {
		var v struct {
			Entry      *audit.Entry
			Checkpoint *audit.Checkpoint
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		switch {
		case seq > 0 && v.Entry != nil && v.Entry.Replica == replica && v.Entry.Seq == seq:
			return i
		case seq == 0 && v.Checkpoint != nil && v.Checkpoint.Replica == replica:
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no line for %s/%d", replica, seq)
	}
	return at
}

func entryAt(t *testing.T, line string) audit.Entry {
	t.Helper()
	var v struct{ Entry audit.Entry }
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatal(err)
	}
	return v.Entry
}

func entryLine(t *testing.T, e audit.Entry) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"entry": e})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkpointAt(t *testing.T, line string) audit.Checkpoint {
	t.Helper()
	var v struct{ Checkpoint audit.Checkpoint }
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatal(err)
	}
	return v.Checkpoint
}

func checkpointLine(t *testing.T, cp audit.Checkpoint) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"checkpoint": cp})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func without(lines []string, idx ...int) []string {
	out := []string{}
	for i, l := range lines {
		drop := false
		for _, j := range idx {
			drop = drop || i == j
		}
		if !drop {
			out = append(out, l)
		}
	}
	return out
}

func TestVerifyExportFindsTampering(t *testing.T) {
	f := newExportFixture(t)
	keys := audit.KeyFunc(f.key.Public())
	other := signingKey(t)

	tests := []struct {
		name   string
		tamper func(t *testing.T, lines []string) []string
		seq    uint64 // of the *audit.Error, 0: any error
		want   string // in the error; "" for no error
	}{
		{"untouched", func(t *testing.T, l []string) []string { return l }, 0, ""},
		{"edit a field of one entry", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-1", 2)
			e := entryAt(t, l[i])
			e.To = "KZ-GP"
			l[i] = entryLine(t, e)
			return l
		}, 2, "edited"},
		{"edit a category of one entry", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-2", 1)
			l[i] = strings.Replace(l[i], `"record.health"`, `"record.education"`, 1)
			return l
		}, 1, "edited"},
		{"edit one entry and rehash the rest of the chain", func(t *testing.T, l []string) []string {
			prev := ""
			for seq := uint64(1); seq <= 6; seq++ {
				i := find(t, l, "gw-1", seq)
				e := entryAt(t, l[i])
				if seq == 5 {
					e.Purpose = "family-tracing"
				}
				e.Prev = prev
				e.Hash, _ = e.ComputeHash()
				prev = e.Hash
				l[i] = entryLine(t, e)
			}
			return l
		}, 6, "rewritten"},
		{"delete one entry", func(t *testing.T, l []string) []string {
			return without(l, find(t, l, "gw-1", 3))
		}, 3, "deleted"},
		{"swap two entries", func(t *testing.T, l []string) []string {
			i, j := find(t, l, "gw-1", 4), find(t, l, "gw-1", 5)
			l[i], l[j] = l[j], l[i]
			return l
		}, 4, "reordered"},
		{"insert a copy of an entry", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-1", 2)
			return append(l[:i+1], l[i:]...)
		}, 3, "inserted"},
		{"truncate the tail", func(t *testing.T, l []string) []string {
			return without(l, find(t, l, "gw-1", 6), find(t, l, "gw-1", 0))
		}, 0, "cut off"},
		{"truncate the tail, keep the export checkpoint", func(t *testing.T, l []string) []string {
			return without(l, find(t, l, "gw-1", 6))
		}, 6, "removed from the end"},
		{"drop the export checkpoint", func(t *testing.T, l []string) []string {
			return without(l, find(t, l, "gw-2", 0))
		}, 0, "cut off"},
		{"forged checkpoint signature", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-1", 0)
			cp := checkpointAt(t, l[i])
			sig := []byte(cp.Signature)
			last := len(sig) - 5
			if sig[last] == 'A' {
				sig[last] = 'B'
			} else {
				sig[last] = 'A'
			}
			cp.Signature = string(sig)
			l[i] = checkpointLine(t, cp)
			return l
		}, 6, "signature invalid"},
		{"checkpoint fields edited", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-2", 0)
			cp := checkpointAt(t, l[i])
			cp.Count = 1
			l[i] = checkpointLine(t, cp)
			return l
		}, 1, "differ from the signed claims"},
		{"checkpoint from another key", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-1", 0)
			cp := checkpointAt(t, l[i])
			forged, err := audit.SignCheckpoint(other, cp.Replica, cp.Count, cp.Head, cp.Time, true)
			if err != nil {
				t.Fatal(err)
			}
			l[i] = checkpointLine(t, forged)
			return l
		}, 6, "unknown key"},
		{"cut off and re-signed by another key", func(t *testing.T, l []string) []string {
			i := find(t, l, "gw-1", 0)
			cp := checkpointAt(t, l[i])
			e := entryAt(t, l[find(t, l, "gw-1", 5)])
			forged, _ := audit.SignCheckpoint(other, cp.Replica, 5, e.Hash, cp.Time, true)
			l[i] = checkpointLine(t, forged)
			return without(l, find(t, l, "gw-1", 6))
		}, 5, "unknown key"},
		{"not an export line", func(t *testing.T, l []string) []string {
			return append(l, `{"note":"added"}`)
		}, 0, "line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lines := tc.tamper(t, append([]string(nil), f.lines...))
			_, err := audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), keys)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("untouched export refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("tampering not detected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			var ae *audit.Error
			if tc.seq != 0 && (!errors.As(err, &ae) || ae.Seq != tc.seq) {
				t.Fatalf("error %q does not name %d", err, tc.seq)
			}
		})
	}
}

// Every entry line, edited anywhere, is caught: the "done when" of the issue.
func TestEveryEntryEditIsDetected(t *testing.T) {
	f := newExportFixture(t)
	keys := audit.KeyFunc(f.key.Public())
	edits := 0
	for i, l := range f.lines {
		if !strings.HasPrefix(l, `{"entry"`) {
			continue
		}
		e := entryAt(t, l)
		for _, edit := range []func(*audit.Entry){
			func(e *audit.Entry) { e.Time = e.Time.Add(time.Nanosecond) },
			func(e *audit.Entry) { e.Kind = audit.KindDenied },
			func(e *audit.Entry) { e.SubjectHash = digest("another") },
			func(e *audit.Entry) { e.Rules = e.Rules[:1] },
			func(e *audit.Entry) { e.Replica = "gw-9" },
		} {
			c := e
			c.Rules = append([]string(nil), e.Rules...)
			edit(&c)
			lines := append([]string(nil), f.lines...)
			lines[i] = entryLine(t, c)
			if _, err := audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")), keys); err == nil {
				t.Fatalf("edit of line %d not detected", i)
			}
			edits++
		}
	}
	if edits < 40 {
		t.Fatalf("only %d edits tried", edits)
	}
}

func TestCompareLive(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(t *testing.T, f *exportFixture) []string // returns the export lines to compare
		want   string
	}{
		{"export matches the live log", func(t *testing.T, f *exportFixture) []string { return f.lines }, ""},
		{"live log grew after the export", func(t *testing.T, f *exportFixture) []string {
			record(t, newLog(t, f.b, "gw-1", f.key, time.Now), 2, "ref-4")
			record(t, newLog(t, f.b, "gw-3", f.key, time.Now), 1, "ref-4")
			return f.lines
		}, ""},
		{"an entry appended again after the export, with its original time", func(t *testing.T, f *exportFixture) []string {
			// The journal put back a change a failover of the shared
			// store erased: its event predates the export, its append not.
			e := audit.Entry{Kind: audit.KindRegistryReloaded, Time: time.Now().Add(-time.Hour), ReappliedAt: time.Now()}
			if _, err := f.b.Append(ctx, "gw-1", e); err != nil {
				t.Fatal(err)
			}
			return f.lines
		}, ""},
		{"a replica's chain left out of the export", func(t *testing.T, f *exportFixture) []string {
			var out []string
			for _, l := range f.lines {
				if !strings.Contains(l, `"replica":"gw-2"`) {
					out = append(out, l)
				}
			}
			return out
		}, "missing from the export"},
		{"live tail cut after the export", func(t *testing.T, f *exportFixture) []string {
			rawEdit(t, f, func(chain *rawChain) {
				chain.Bucket([]byte("entries")).Delete(seqKey(6))
				e := rawEntry(t, chain, 5)
				chain.Put([]byte("head"), append(seqKey(5), e.Hash...))
			})
			return f.lines
		}, "live log cut"},
		{"live entry rewritten after the export", func(t *testing.T, f *exportFixture) []string {
			rawEdit(t, f, func(chain *rawChain) {
				e := rawEntry(t, chain, 6)
				e.Hash = digest("other")
				b, _ := json.Marshal(e)
				chain.Bucket([]byte("entries")).Put(seqKey(6), b)
			})
			return f.lines
		}, "rewritten"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newExportFixture(t)
			lines := tc.change(t, f)
			s, err := audit.VerifyExport(strings.NewReader(strings.Join(lines, "\n")), audit.KeyFunc(f.key.Public()))
			if err != nil {
				t.Fatalf("export refused offline: %v", err)
			}
			err = audit.CompareLive(ctx, s, f.b)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("not detected")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// TestVerifyLiveFindsTampering edits the bolt file under the log.
func TestVerifyLiveFindsTampering(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		edit func(t *testing.T, chain *rawChain)
		want string
	}{
		{"untouched", func(*testing.T, *rawChain) {}, ""},
		{"entry edited", func(t *testing.T, chain *rawChain) {
			e := rawEntry(t, chain, 2)
			e.From = "KZ-MVD"
			b, _ := json.Marshal(e)
			chain.Bucket([]byte("entries")).Put(seqKey(2), b)
		}, "entry 2: hash does not match"},
		{"entry deleted", func(t *testing.T, chain *rawChain) {
			chain.Bucket([]byte("entries")).Delete(seqKey(4))
		}, "entry 4: found entry 5"},
		{"tail deleted, head left", func(t *testing.T, chain *rawChain) {
			chain.Bucket([]byte("entries")).Delete(seqKey(6))
		}, "entries removed"},
		{"entry added past the head", func(t *testing.T, chain *rawChain) {
			e := rawEntry(t, chain, 6)
			e.Seq, e.Prev, e.To = 7, e.Hash, "KZ-GP"
			e.Hash, _ = e.ComputeHash()
			b, _ := json.Marshal(e)
			chain.Bucket([]byte("entries")).Put(seqKey(7), b)
		}, "entry 7: the chain goes on past the stored head 6"},
		{"tail behind a checkpoint deleted, head fixed", func(t *testing.T, chain *rawChain) {
			for s := uint64(3); s <= 6; s++ {
				chain.Bucket([]byte("entries")).Delete(seqKey(s))
			}
			e := rawEntry(t, chain, 2)
			chain.Put([]byte("head"), append(seqKey(2), e.Hash...))
		}, "checkpoint at 3: signed for 3 entries, the chain has 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newExportFixture(t)
			rawEdit(t, f, func(chain *rawChain) { tc.edit(t, chain) })
			_, err := audit.VerifyLive(ctx, f.b, audit.KeyFunc(f.key.Public()))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("not detected")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// rawEdit closes the fixture's log, edits chain gw-1 with bbolt directly,
// and reopens it.
func rawEdit(t *testing.T, f *exportFixture, edit func(chain *rawChain)) {
	t.Helper()
	f.b.Close()
	db, err := bbolt.Open(f.path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		edit(&rawChain{tx})
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if f.b, err = bolt.Open(f.path, bolt.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.b.Close() })
}

// rawChain is chain gw-1 in the store's file (kvstore's layout: entries
// under "gw-1\x00"+seq in bucket chain, the head in bucket heads), with
// the calls of a chain bucket of its own.
type rawChain struct{ tx *bbolt.Tx }

// rawEntries are its entries, by seqKey.
type rawEntries struct{ b *bbolt.Bucket }

func (c *rawChain) Bucket([]byte) rawEntries { return rawEntries{c.tx.Bucket([]byte("chain"))} }

// Put sets the head (the only key a chain had besides its entries).
func (c *rawChain) Put(_, v []byte) error { return c.tx.Bucket([]byte("heads")).Put([]byte("gw-1"), v) }

func (e rawEntries) key(seq []byte) []byte   { return append([]byte("gw-1\x00"), seq...) }
func (e rawEntries) Get(seq []byte) []byte   { return e.b.Get(e.key(seq)) }
func (e rawEntries) Put(seq, v []byte) error { return e.b.Put(e.key(seq), v) }
func (e rawEntries) Delete(seq []byte) error { return e.b.Delete(e.key(seq)) }

func rawEntry(t *testing.T, chain *rawChain, seq uint64) audit.Entry {
	t.Helper()
	var e audit.Entry
	if err := json.Unmarshal(chain.Bucket([]byte("entries")).Get(seqKey(seq)), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		k[i] = byte(n)
		n >>= 8
	}
	return k
}
