package kv_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xborder/xborder/gateway/store/kv"
)

// benchUpdate runs one put-heavy update per op, the shape of an
// acceptance: it reads a head key and writes a 2 KiB record, a queue
// entry, an index entry, a 256-byte log entry and the head again.
func benchUpdate(b *testing.B, db kv.DB) {
	record := bytes.Repeat([]byte("r"), 2048)
	entry := bytes.Repeat([]byte("e"), 256)
	b.SetBytes(int64(len(record) + len(entry)))
	b.ReportAllocs()
	var id [8]byte
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(id[:], uint64(i))
		err := db.Update(ctx, func(tx kv.Tx) error {
			if _, _, err := tx.Get("head", []byte("h")); err != nil {
				return err
			}
			for _, w := range []struct {
				bucket string
				key    []byte
				value  []byte
			}{
				{"records", id[:], record},
				{"queue", append([]byte("recipient/"), id[:]...), id[:]},
				{"index", append([]byte("due/"), id[:]...), id[:]},
				{"log", id[:], entry},
				{"head", []byte("h"), id[:]},
			} {
				if err := tx.Put(w.bucket, w.key, w.value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
