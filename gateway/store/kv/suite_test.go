// The kv contract's conformance suite: every driver passes runSuite
// (drivers_test.go runs it on each), and a driver other processes can share
// passes twoProcesses.

package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/xborder/xborder/gateway/store/kv"
)

// opener returns an empty store; the suite closes it.
type opener func(t *testing.T) kv.DB

// suiteOptions say what the driver is.
type suiteOptions struct {
	// Serial: the driver runs one update at a time, so that no update
	// can lose a race and the tests that stage one do not apply (a
	// nested update would wait for its parent forever).
	Serial bool
}

// runSuite runs the suite against the stores open returns.
func runSuite(t *testing.T, open opener, o suiteOptions) {
	tests := []struct {
		name   string
		fn     func(*testing.T, kv.DB)
		racing bool
	}{
		{"GetPutDelete", testGetPutDelete, false},
		{"Refusals", testRefusals, false},
		{"ScanOrder", testScanOrder, false},
		{"ScanRanges", testScanRanges, false},
		{"ScanOwnWrites", testScanOwnWrites, false},
		{"ErrorWritesNothing", testErrorWritesNothing, false},
		{"Atomic", testAtomic, false},
		{"Counter", testCounter, false},
		{"LostRaceGet", testLostRaceGet, true},
		{"LostRaceAbsent", testLostRaceAbsent, true},
		{"LostRaceScan", testLostRaceScan, true},
		{"LostRaceDelete", testLostRaceDelete, true},
		{"InconsistentView", testInconsistentView, true},
		{"BlindWritesDoNotConflict", testBlindWrites, true},
		{"Prefetch", testPrefetch, false},
		{"LostRacePrefetched", testLostRacePrefetched, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.racing && o.Serial {
				t.Skip("the driver serialises updates: no update can lose a race")
			}
			db := open(t)
			t.Cleanup(func() { db.Close() })
			tc.fn(t, db)
		})
	}
}

var ctx = context.Background()

func put(t *testing.T, db kv.DB, bucket, key, value string) {
	t.Helper()
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put(bucket, []byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

// get reads key in a View; "" and false when absent.
func get(t *testing.T, db kv.DB, bucket, key string) (string, bool) {
	t.Helper()
	var v []byte
	var ok bool
	if err := db.View(ctx, func(r kv.Reader) (err error) {
		v, ok, err = r.Get(bucket, []byte(key))
		v = bytes.Clone(v)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

// scan lists bucket's keys and values in [from, to) as "k=v".
func scan(t *testing.T, r kv.Reader, bucket string, from, to []byte) []string {
	t.Helper()
	var got []string
	if err := r.Scan(bucket, from, to, func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func scanView(t *testing.T, db kv.DB, bucket string, from, to []byte) []string {
	t.Helper()
	var got []string
	if err := db.View(ctx, func(r kv.Reader) error { got = scan(t, r, bucket, from, to); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func testGetPutDelete(t *testing.T, db kv.DB) {
	if v, ok := get(t, db, "a", "k"); ok {
		t.Fatalf("an empty store has a/k = %q", v)
	}
	err := db.Update(ctx, func(tx kv.Tx) error {
		buf := []byte("v1")
		if err := tx.Put("a", []byte("k"), buf); err != nil {
			return err
		}
		copy(buf, "XX") // the caller may reuse its buffer after Put
		v, ok, err := tx.Get("a", []byte("k"))
		if err != nil || !ok || string(v) != "v1" {
			return fmt.Errorf("the transaction does not read its own write: %q %v %v", v, ok, err)
		}
		if err := tx.Put("b", []byte("k"), []byte("other bucket")); err != nil {
			return err
		}
		return tx.Put("a", []byte("empty"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := get(t, db, "a", "k"); !ok || v != "v1" {
		t.Errorf("a/k = %q %v, want v1", v, ok)
	}
	if v, ok := get(t, db, "b", "k"); !ok || v != "other bucket" {
		t.Errorf("b/k = %q %v", v, ok)
	}
	if v, ok := get(t, db, "a", "empty"); !ok || v != "" {
		t.Errorf("an empty value reads as %q %v, want present and empty", v, ok)
	}
	put(t, db, "a", "k", "v2")
	if v, _ := get(t, db, "a", "k"); v != "v2" {
		t.Errorf("overwritten a/k = %q", v)
	}
	err = db.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Delete("a", []byte("k")); err != nil {
			return err
		}
		if _, ok, err := tx.Get("a", []byte("k")); ok || err != nil {
			return fmt.Errorf("a deleted key is read in its transaction (%v)", err)
		}
		if err := tx.Delete("a", []byte("never")); err != nil {
			return fmt.Errorf("deleting an absent key: %w", err)
		}
		return tx.Delete("nobucket", []byte("k"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, db, "a", "k"); ok {
		t.Error("a/k survives its deletion")
	}
	if got := scanView(t, db, "a", nil, nil); !slices.Equal(got, []string{"empty="}) {
		t.Errorf("a holds %q after the deletion", got)
	}
	if v, ok := get(t, db, "b", "k"); !ok || v != "other bucket" {
		t.Errorf("deleting a/k touched b/k: %q %v", v, ok)
	}
}

func testRefusals(t *testing.T, db kv.DB) {
	long := bytes.Repeat([]byte("k"), kv.MaxKey+1)
	err := db.Update(ctx, func(tx kv.Tx) error {
		for _, c := range []struct {
			what string
			err  error
		}{
			{"empty bucket put", tx.Put("", []byte("k"), nil)},
			{"empty key put", tx.Put("a", nil, nil)},
			{"long key put", tx.Put("a", long, nil)},
			{"empty key get", func() error { _, _, err := tx.Get("a", []byte{}); return err }()},
			{"empty bucket delete", tx.Delete("", []byte("k"))},
			{"empty bucket scan", tx.Scan("", nil, nil, func(k, v []byte) error { return nil })},
		} {
			if c.err == nil {
				t.Errorf("%s: no error", c.what)
			}
		}
		return tx.Put("a", []byte("ok"), []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scanView(t, db, "a", nil, nil); !slices.Equal(got, []string{"ok=1"}) {
		t.Errorf("after the refusals a holds %q", got)
	}
}

// keys of every shape byte order must sort: prefixes, NUL, 0xff, and more
// than one page of a driver that reads in pages.
func orderKeys() []string {
	ks := []string{"a", "a\x00", "a\x00\x00", "ab", "b", "\x00", "\xff", "\xff\xff", "B", "aa", "a\xff"}
	for i := range 600 {
		ks = append(ks, fmt.Sprintf("n%04d", i))
	}
	return ks
}

func testScanOrder(t *testing.T, db kv.DB) {
	ks := orderKeys()
	rand.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	for i := 0; i < len(ks); i += 100 {
		chunk := ks[i:min(i+100, len(ks))]
		if err := db.Update(ctx, func(tx kv.Tx) error {
			for _, k := range chunk {
				if err := tx.Put("s", []byte(k), []byte("v"+k)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(ks) // Go's string order is byte order
	var want []string
	for _, k := range ks {
		want = append(want, k+"=v"+k)
	}
	if got := scanView(t, db, "s", nil, nil); !slices.Equal(got, want) {
		t.Errorf("scan order:\n got %q\nwant %q", head(got), head(want))
	}
	if got := scanView(t, db, "missing", nil, nil); len(got) != 0 {
		t.Errorf("a missing bucket yields %q", got)
	}
	// Stop ends the scan with no error; another error is returned.
	n := 0
	boom := errors.New("boom")
	err := db.View(ctx, func(r kv.Reader) error {
		if err := r.Scan("s", nil, nil, func(k, v []byte) error {
			if n++; n == 300 {
				return kv.Stop
			}
			return nil
		}); err != nil {
			return err
		}
		return r.Scan("s", nil, nil, func(k, v []byte) error { return boom })
	})
	if n != 300 || !errors.Is(err, boom) {
		t.Errorf("Stop after 300 keys: %d calls; an error from fn: %v", n, err)
	}
}

func head(s []string) []string { return s[:min(len(s), 15)] }

func testScanRanges(t *testing.T, db kv.DB) {
	for _, k := range []string{"a", "ab", "b", "ba", "c"} {
		put(t, db, "r", k, "")
	}
	keys := func(got []string) string {
		var s []string
		for _, g := range got {
			s = append(s, g[:len(g)-1])
		}
		return fmt.Sprint(s)
	}
	for _, c := range []struct {
		from, to []byte
		want     string
	}{
		{nil, nil, "[a ab b ba c]"},
		{[]byte("ab"), nil, "[ab b ba c]"},
		{[]byte("aa"), []byte("b"), "[ab]"},
		{nil, []byte("b"), "[a ab]"},
		{[]byte("b"), []byte("b\xff"), "[b ba]"}, // a prefix
		{[]byte("b"), []byte("b"), "[]"},
		{[]byte("c\x00"), nil, "[]"},
		{[]byte("c"), []byte("a"), "[]"},
	} {
		if got := keys(scanView(t, db, "r", c.from, c.to)); got != c.want {
			t.Errorf("[%q, %q): %s, want %s", c.from, c.to, got, c.want)
		}
	}
}

// A scan in an update sees the update's own puts and deletes; a write to
// the bucket being scanned is refused, one to another bucket is not.
func testScanOwnWrites(t *testing.T, db kv.DB) {
	for _, k := range []string{"b", "d", "f"} {
		put(t, db, "w", k, "old")
	}
	err := db.Update(ctx, func(tx kv.Tx) error {
		for _, w := range []struct{ k, v string }{{"a", "new"}, {"d", "new"}, {"e", "new"}, {"z", "new"}} {
			if err := tx.Put("w", []byte(w.k), []byte(w.v)); err != nil {
				return err
			}
		}
		if err := tx.Delete("w", []byte("f")); err != nil {
			return err
		}
		if got, want := scan(t, tx, "w", nil, nil), []string{"a=new", "b=old", "d=new", "e=new", "z=new"}; !slices.Equal(got, want) {
			t.Errorf("scan in the update: %q, want %q", got, want)
		}
		if got, want := scan(t, tx, "w", []byte("c"), []byte("f")), []string{"d=new", "e=new"}; !slices.Equal(got, want) {
			t.Errorf("[c, f) in the update: %q, want %q", got, want)
		}
		return tx.Scan("w", nil, nil, func(k, v []byte) error {
			if err := tx.Put("w", []byte("x"), nil); !errors.Is(err, kv.ErrScanWrite) {
				return fmt.Errorf("a put into the bucket being scanned: %v", err)
			}
			if err := tx.Delete("w", k); !errors.Is(err, kv.ErrScanWrite) {
				return fmt.Errorf("a delete in the bucket being scanned: %v", err)
			}
			return tx.Put("other", k, v)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := scanView(t, db, "other", nil, nil), []string{"a=new", "b=old", "d=new", "e=new", "z=new"}; !slices.Equal(got, want) {
		t.Errorf("other: %q, want %q", got, want)
	}
}

func testErrorWritesNothing(t *testing.T, db kv.DB) {
	put(t, db, "a", "k", "before")
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx kv.Tx) error {
		if _, _, err := tx.Get("a", []byte("k")); err != nil {
			return err
		}
		for i := range 50 {
			if err := tx.Put("a", []byte(fmt.Sprint("new", i)), []byte("x")); err != nil {
				return err
			}
		}
		tx.Put("a", []byte("k"), []byte("after"))
		tx.Put("fresh", []byte("k"), []byte("x"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if got := scanView(t, db, "a", nil, nil); !slices.Equal(got, []string{"k=before"}) {
		t.Errorf("a failed update wrote: %q", got)
	}
	if got := scanView(t, db, "fresh", nil, nil); len(got) != 0 {
		t.Errorf("a failed update wrote: %q", got)
	}
}

// Atomic: a writer rewrites 40 keys in two buckets to one generation per
// update; readers, scanning both, never see two generations at once.
func testAtomic(t *testing.T, db kv.DB) {
	const keys, gens = 40, 40
	write := func(g int) error {
		return db.Update(ctx, func(tx kv.Tx) error {
			for i := range keys {
				for _, b := range []string{"x", "y"} {
					if err := tx.Put(b, []byte(fmt.Sprintf("%03d", i)), []byte(strconv.Itoa(g))); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err := write(0); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var views, mixed, conflicts int
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			for range 300 { // enough views to overlap every commit; bounded to spare the CPU
				select {
				case <-done:
					return
				default:
				}
				seen := map[string]int{}
				err := db.View(ctx, func(r kv.Reader) error {
					clear(seen)
					for _, b := range []string{"x", "y"} {
						if err := r.Scan(b, nil, nil, func(k, v []byte) error { seen[string(v)]++; return nil }); err != nil {
							return err
						}
					}
					return nil
				})
				mu.Lock()
				switch {
				case errors.Is(err, kv.ErrConflict):
					conflicts++
				case err != nil:
					t.Error(err)
				case len(seen) != 1 || slices.Collect(maps.Values(seen))[0] != 2*keys:
					mixed++
					t.Errorf("a view saw %v (generation: count)", seen)
				default:
					views++
				}
				mu.Unlock()
			}
		})
	}
	for g := 1; g <= gens; g++ {
		if err := write(g); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	t.Logf("%d consistent views, %d conflicts (retried by the caller)", views, conflicts)
	// With the writer done, a view is consistent, and sees the last
	// generation everywhere.
	var last []string
	if err := db.View(ctx, func(r kv.Reader) error {
		last = append(scan(t, r, "x", nil, nil), scan(t, r, "y", nil, nil)...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, kv := range last {
		if i >= 2*keys || !strings.HasSuffix(kv, "="+strconv.Itoa(gens)) {
			t.Fatalf("after the last generation: %q", head(last))
		}
	}
	if len(last) != 2*keys {
		t.Errorf("%d keys after the last generation, want %d", len(last), 2*keys)
	}
}

// increment adds one to bucket "count" key "n" in one update, running it
// again on a conflict; it returns how many conflicts it met.
func increment(ctx context.Context, db kv.DB) (conflicts int, err error) {
	for {
		err := db.Update(ctx, func(tx kv.Tx) error {
			v, _, err := tx.Get("count", []byte("n"))
			if err != nil {
				return err
			}
			n, _ := strconv.Atoi(string(v))
			return tx.Put("count", []byte("n"), []byte(strconv.Itoa(n+1)))
		})
		if !errors.Is(err, kv.ErrConflict) {
			return conflicts, err
		}
		conflicts++
	}
}

// count reads the counter increment adds to.
func count(t testing.TB, db kv.DB) int {
	t.Helper()
	var n int
	if err := db.View(ctx, func(r kv.Reader) error {
		v, _, err := r.Get("count", []byte("n"))
		n, _ = strconv.Atoi(string(v))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Counter: four writers in one process, 50 increments each, none lost.
func testCounter(t *testing.T, db kv.DB) {
	const writers, each = 4, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for range writers {
		wg.Go(func() {
			for range each {
				c, err := increment(ctx, db)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				conflicts += c
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := count(t, db); n != writers*each {
		t.Errorf("count %d, want %d", n, writers*each)
	}
	t.Logf("%d conflicts retried", conflicts)
}

// race runs first (reads, then lets the rival commit, then writes) and
// checks it lost: ErrConflict, none of its writes, the rival's in place.
func race(t *testing.T, db kv.DB, read func(kv.Tx) error, rival func(kv.Tx) error) {
	t.Helper()
	err := db.Update(ctx, func(tx kv.Tx) error {
		if err := read(tx); err != nil {
			return err
		}
		if err := db.Update(ctx, rival); err != nil {
			return fmt.Errorf("the rival: %w", err)
		}
		if err := tx.Put("loser", []byte("k"), []byte("written")); err != nil {
			return err
		}
		return tx.Put("a", []byte("loser"), []byte("written"))
	})
	if !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("the update that lost its race returned %v, want kv.ErrConflict", err)
	}
	if got := scanView(t, db, "loser", nil, nil); len(got) != 0 {
		t.Errorf("the loser wrote %q", got)
	}
	if _, ok := get(t, db, "a", "loser"); ok {
		t.Error("the loser wrote a/loser")
	}
	if v, ok := get(t, db, "rival", "k"); !ok || v != "won" {
		t.Errorf("the rival's write: %q %v", v, ok)
	}
}

func rivalPut(bucket, key string) func(kv.Tx) error {
	return func(tx kv.Tx) error {
		if err := tx.Put(bucket, []byte(key), []byte("rival")); err != nil {
			return err
		}
		return tx.Put("rival", []byte("k"), []byte("won"))
	}
}

func testLostRaceGet(t *testing.T, db kv.DB) {
	put(t, db, "a", "k", "v")
	race(t, db, func(tx kv.Tx) error { _, _, err := tx.Get("a", []byte("k")); return err }, rivalPut("a", "k"))
	// The same value written again is a new version: the guard is the
	// version, not the value.
	race(t, db, func(tx kv.Tx) error { _, _, err := tx.Get("a", []byte("k")); return err }, rivalPut("a", "k"))
}

func testLostRaceAbsent(t *testing.T, db kv.DB) {
	race(t, db, func(tx kv.Tx) error { _, _, err := tx.Get("a", []byte("k")); return err }, rivalPut("a", "k"))
}

func testLostRaceDelete(t *testing.T, db kv.DB) {
	put(t, db, "a", "k", "v")
	race(t, db, func(tx kv.Tx) error { _, _, err := tx.Get("a", []byte("k")); return err }, func(tx kv.Tx) error {
		if err := tx.Delete("a", []byte("k")); err != nil {
			return err
		}
		return tx.Put("rival", []byte("k"), []byte("won"))
	})
	// Deleted and written again with the value read: still a conflict.
	put(t, db, "a", "k", "v")
	race(t, db, func(tx kv.Tx) error { _, _, err := tx.Get("a", []byte("k")); return err }, func(tx kv.Tx) error {
		if err := tx.Delete("a", []byte("k")); err != nil {
			return err
		}
		return tx.Put("rival", []byte("k"), []byte("won"))
	})
}

// A key a scan yielded is guarded like one read by Get, on every page.
func testLostRaceScan(t *testing.T, db kv.DB) {
	if err := db.Update(ctx, func(tx kv.Tx) error {
		for i := range 600 {
			if err := tx.Put("q", []byte(fmt.Sprintf("%04d", i)), []byte("due")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	scanAll := func(tx kv.Tx) error {
		return tx.Scan("q", nil, nil, func(k, v []byte) error { return nil })
	}
	for _, k := range []string{"0000", "0300", "0599"} {
		race(t, db, scanAll, rivalPut("q", k))
	}
	// A key the scan did not reach is no guard.
	err := db.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Scan("q", nil, []byte("0100"), func(k, v []byte) error { return nil }); err != nil {
			return err
		}
		if err := db.Update(ctx, rivalPut("q", "0200")); err != nil {
			return err
		}
		return tx.Put("a", []byte("k"), []byte("after a scan"))
	})
	if err != nil {
		t.Errorf("a write outside the scanned range made a conflict: %v", err)
	}
}

// A view that read two keys around an update that changed both is
// refused rather than believed.
func testInconsistentView(t *testing.T, db kv.DB) {
	put(t, db, "a", "x", "1")
	put(t, db, "a", "y", "1")
	var x, y string
	err := db.View(ctx, func(r kv.Reader) error {
		v, _, err := r.Get("a", []byte("x"))
		if err != nil {
			return err
		}
		x = string(v)
		if err := db.Update(ctx, func(tx kv.Tx) error {
			tx.Put("a", []byte("x"), []byte("2"))
			return tx.Put("a", []byte("y"), []byte("2"))
		}); err != nil {
			return err
		}
		v, _, err = r.Get("a", []byte("y"))
		y = string(v)
		if x != y {
			return fmt.Errorf("the view saw x=%s y=%s", x, y)
		}
		return err
	})
	if !errors.Is(err, kv.ErrConflict) {
		t.Errorf("a view that saw x=%s y=%s returned %v, want kv.ErrConflict", x, y, err)
	}
}

// Writes the transaction did not read are no guards: an update that
// reads k and writes j is not refused for a rival's write of j.
func testBlindWrites(t *testing.T, db kv.DB) {
	err := db.Update(ctx, func(tx kv.Tx) error {
		if _, _, err := tx.Get("a", []byte("k")); err != nil {
			return err
		}
		if err := db.Update(ctx, rivalPut("a", "j")); err != nil {
			return err
		}
		return tx.Put("a", []byte("j"), []byte("mine"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, db, "a", "j"); v != "mine" {
		t.Errorf("a/j = %q, want the later commit's", v)
	}
}

func keys(pairs ...string) []kv.Key {
	var out []kv.Key
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, kv.Key{Bucket: pairs[i], Key: []byte(pairs[i+1])})
	}
	return out
}

// Prefetched keys read as Get reads them: present, absent, the
// transaction's own writes (before and after the prefetch), a key read
// again.
func testPrefetch(t *testing.T, db kv.DB) {
	put(t, db, "a", "k", "v")
	put(t, db, "b", "x", "")
	err := db.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Put("a", []byte("mine"), []byte("before")); err != nil {
			return err
		}
		if err := kv.Prefetch(tx, keys("a", "k", "a", "absent", "b", "x", "a", "mine", "c", "k", "a", "k")); err != nil {
			return err
		}
		if err := tx.Put("c", []byte("k"), []byte("after")); err != nil {
			return err
		}
		if err := tx.Delete("a", []byte("k")); err != nil {
			return err
		}
		for _, want := range []struct {
			bucket, key, value string
			ok                 bool
		}{{"a", "k", "", false}, {"a", "absent", "", false}, {"b", "x", "", true}, {"a", "mine", "before", true}, {"c", "k", "after", true}, {"b", "x", "", true}} {
			v, ok, err := tx.Get(want.bucket, []byte(want.key))
			if err != nil {
				return err
			}
			if string(v) != want.value || ok != want.ok {
				return fmt.Errorf("%s/%s = %q %v, want %q %v", want.bucket, want.key, v, ok, want.value, want.ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx kv.Tx) error {
		if _, ok := tx.(kv.Prefetcher); !ok {
			return errors.New("refused") // nothing to prefetch: nothing to refuse
		}
		return kv.Prefetch(tx, keys("", "k"))
	})
	if err == nil {
		t.Error("a prefetch of an empty bucket name was not refused")
	}
	err = db.View(ctx, func(r kv.Reader) error {
		if err := kv.Prefetch(r, keys("b", "x", "c", "k")); err != nil {
			return err
		}
		if v, ok, err := r.Get("c", []byte("k")); err != nil || !ok || string(v) != "after" {
			return fmt.Errorf("c/k = %q %v %v after the commit", v, ok, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A prefetched key a Get then asked for is guarded at the version the
// prefetch read; a prefetched key never asked for is no guard.
func testLostRacePrefetched(t *testing.T, db kv.DB) {
	put(t, db, "a", "k", "v")
	read := func(key string) func(kv.Tx) error {
		return func(tx kv.Tx) error {
			if err := kv.Prefetch(tx, keys("a", key, "a", "unasked")); err != nil {
				return err
			}
			_, _, err := tx.Get("a", []byte(key))
			return err
		}
	}
	// The rival commits after the prefetch and before the Get: the Get
	// answers what the prefetch read, and the commit is refused.
	for _, key := range []string{"k", "absent"} {
		err := db.Update(ctx, func(tx kv.Tx) error {
			if err := kv.Prefetch(tx, keys("a", key)); err != nil {
				return err
			}
			if err := db.Update(ctx, rivalPut("a", key)); err != nil {
				return fmt.Errorf("the rival: %w", err)
			}
			if _, _, err := tx.Get("a", []byte(key)); err != nil {
				return err
			}
			return tx.Put("loser", []byte("k"), []byte("written"))
		})
		if !errors.Is(err, kv.ErrConflict) {
			t.Errorf("an update that read a/%s by prefetch before a rival changed it returned %v, want kv.ErrConflict", key, err)
		}
		if got := scanView(t, db, "loser", nil, nil); len(got) != 0 {
			t.Errorf("the loser wrote %q", got)
		}
	}
	race(t, db, read("k"), rivalPut("a", "k"))
	err := db.Update(ctx, func(tx kv.Tx) error {
		if err := read("k")(tx); err != nil {
			return err
		}
		if err := db.Update(ctx, rivalPut("a", "unasked")); err != nil {
			return err
		}
		return tx.Put("a", []byte("j"), []byte("mine"))
	})
	if err != nil {
		t.Errorf("a rival's write of a key prefetched and never read made a conflict: %v", err)
	}
}
