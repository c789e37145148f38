package bolt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
)

// filled writes a store with enough messages for the messages bucket to
// have a branch page over its leaves, and returns its path.
func filled(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xborder.db")
	s, err := bolt.Open(path, bolt.Options{Replica: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 300 {
		id := fmt.Sprintf("m%04d", i)
		m := &store.Message{From: "unhcr", ID: id, To: "ke-dra", Status: store.StatusAccepted,
			JWSSHA256: "x", DecisionID: "d-" + id, CreatedAt: now, UpdatedAt: now, Expires: now.Add(time.Hour)}
		_, err := s.Accept(ctx, m, []store.Delivery{{ID: "d" + id, Recipient: "ke-dra", Envelope: bytes.Repeat([]byte("e"), 300)}},
			audit.Entry{Kind: audit.KindAccepted, MessageID: id, From: "unhcr", To: "ke-dra"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pageOf returns the page size and the root page of a top-level bucket.
func pageOf(t *testing.T, path, bucket string) (pageSize int64, root uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		root = uint64(tx.Bucket([]byte(bucket)).Root())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return int64(db.Info().PageSize), root
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// A damaged page makes Open fail with an error that names the file and
// says what to do — not a panic (bbolt panics on these, some in goroutines
// of its own where nothing can recover) — and Check finds it too.
func TestOpenDamaged(t *testing.T) {
	if testing.Short() {
		t.Skip("a crash test: damages pages of store files and opens each")
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"branch page overwritten", func(t *testing.T, path string) {
			ps, root := pageOf(t, path, "messages")
			junk := make([]byte, ps)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(r.UintN(256))
			}
			patch(t, path, int64(root)*ps, junk)
		}},
		{"child page id far outside the file", func(t *testing.T, path string) {
			ps, root := pageOf(t, path, "messages")
			if flags := binary.LittleEndian.Uint16(read(t, path, int64(root)*ps+8, 2)); flags != 0x01 {
				t.Fatalf("the messages root is not a branch page (flags %#x)", flags)
			}
			patch(t, path, int64(root)*ps+16+8, binary.LittleEndian.AppendUint64(nil, 1<<40))
		}},
		{"leaf element outside its page", func(t *testing.T, path string) {
			ps, root := pageOf(t, path, "messages")
			child := binary.LittleEndian.Uint64(read(t, path, int64(root)*ps+16+8, 8))
			// Element 0 of the leaf: flags, pos, ksize, vsize.
			patch(t, path, int64(child)*ps+16+4, binary.LittleEndian.AppendUint32(nil, 1<<30))
		}},
		{"page that names another", func(t *testing.T, path string) {
			ps, root := pageOf(t, path, "deliveries")
			patch(t, path, int64(root)*ps, binary.LittleEndian.AppendUint64(nil, 3))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filled(t)
			tc.damage(t, path)
			s, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			if !errors.Is(err, store.ErrDamaged) || !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("err = %v, want ErrDamaged and ErrUnavailable", err)
			}
			for _, want := range []string{path, "restore it from a backup", "xborder store check"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// Check reads a sound store through and says what it checked; a record
// that does not decode is its first problem.
func TestCheck(t *testing.T) {
	path := filled(t)
	s, err := bolt.Open(path, bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.Check(context.Background(), &out); err != nil {
		t.Fatalf("Check of a sound store: %v\n%s", err, out.String())
	}
	s.Close()
	for _, want := range []string{"pages ok", "messages: 300 records ok", "queues: 1 recipients, 300 deliveries ok", "audit chain gw-1: 300 entries read"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Check said\n%s\nwithout %q", out.String(), want)
		}
	}
	corruptDelivery(t, path, "ke-dra", "dm0007")
	if s, err = bolt.Open(path, bolt.Options{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Check(context.Background(), &bytes.Buffer{})
	if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "ke-dra/dm0007") {
		t.Fatalf("Check of a damaged record: %v", err)
	}
}
