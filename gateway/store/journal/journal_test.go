package journal_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store/journal"
)

// Records survive a reopen; ids handed out before it are never handed out
// again (their markers may be in the store), even ids never journaled; a
// second process cannot open the same journal.
func TestJournalFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "j.db")
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b, lost := j.NextID(), j.NextID(), j.NextID()
	if !(a < b && b < lost) {
		t.Fatalf("ids %d %d %d not increasing", a, b, lost)
	}
	at := time.Now().UTC().Round(0)
	if err := j.Put([]journal.Record{{ID: a, Op: "accept", Args: []byte(`{"x":1}`), At: at, Epoch: "e1", Offset: 10},
		{ID: b, Op: "ack", Args: []byte(`{}`), At: at, Epoch: "e1", Offset: 11}}); err != nil {
		t.Fatal(err)
	}
	if _, err := journal.Open(path); err == nil {
		t.Error("a second open of a journal in use succeeded")
	}
	if err := j.Remove([]uint64{a}); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, err = journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	recs, err := j.Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != b || recs[0].Op != "ack" || !recs[0].At.Equal(at) || recs[0].Epoch != "e1" || recs[0].Offset != 11 {
		t.Errorf("after reopening: %+v", recs)
	}
	// A new version of the record keeps its arguments.
	recs[0].Epoch = "e2"
	if err := j.Put(recs); err != nil {
		t.Fatal(err)
	}
	if args, err := j.ArgsOf(b); err != nil || string(args) != "{}" {
		t.Errorf("arguments of %d: %q %v", b, args, err)
	}
	if args, err := j.ArgsOf(a); err != nil || args != nil {
		t.Errorf("arguments of the removed %d: %q %v", a, args, err)
	}
	if next := j.NextID(); next <= lost {
		t.Errorf("id %d after reopening, not above %d handed out before", next, lost)
	}
	if n, err := j.Len(); err != nil || n != 1 {
		t.Errorf("Len %d %v", n, err)
	}
}
