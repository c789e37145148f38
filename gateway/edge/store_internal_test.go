package edge

import (
	"encoding/json"
	"testing"
	"time"
)

// The pending index's binary form reads back what was written, and a
// store written before it (JSON values) still reads.
func TestDueForms(t *testing.T) {
	now := time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.UTC)
	want := Due{ID: "0193a1b2-0000-7000-8000-000000000001", NextAt: now.Add(time.Second), Exp: 1796000000.25,
		MaybeReceived: true, CreatedAt: now}
	got, err := decodeDue([]byte(want.ID), encodeDue(want))
	if err != nil || got != want {
		t.Fatalf("binary: got %+v, %v; want %+v", got, err, want)
	}
	old, _ := json.Marshal(want)
	if got, err := decodeDue([]byte(want.ID), old); err != nil || !got.NextAt.Equal(want.NextAt) || got.Exp != want.Exp || !got.MaybeReceived {
		t.Fatalf("JSON: got %+v, %v; want %+v", got, err, want)
	}
	if _, err := decodeDue([]byte(want.ID), []byte("\\x01garbage")); err == nil {
		t.Fatal("a damaged value decoded")
	}
}
