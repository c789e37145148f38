package kvstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestDeliveryRecordRoundTrip(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	cases := []struct {
		name string
		r    deliveryRecord
	}{
		{"typical", deliveryRecord{attempts: 3, seq: 42, created: at, visible: at.Add(time.Minute),
			messageFrom: "unhcr", messageID: "m1", envelope: []byte("a.b.c.d.e")}},
		{"zero times and empty envelope", deliveryRecord{messageFrom: "a", messageID: "b"}},
		{"before 1970", deliveryRecord{created: time.Date(1960, 5, 6, 7, 8, 9, 10, time.UTC),
			visible: time.Date(1960, 5, 6, 7, 8, 9, 10, time.UTC), envelope: []byte{0, 1, 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got deliveryRecord
			if err := got.unmarshal(tc.r.marshal()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.r) {
				t.Errorf("got %+v, want %+v", got, tc.r)
			}
		})
	}
}

func TestDeliveryRecordCorrupt(t *testing.T) {
	good := (&deliveryRecord{seq: 1, messageFrom: "unhcr", messageID: "m1", envelope: []byte("jwe")}).marshal()
	cases := map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(bytes.Clone(good), 0),
		"huge length":   append(bytes.Clone(good[:len(good)-4]), 0xff, 0xff, 0xff, 0x0f),
	}
	for name, b := range cases {
		var r deliveryRecord
		if err := r.unmarshal(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestIndexKeyOrder(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ordered := [][]byte{
		indexKey(time.Time{}, 9),
		indexKey(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), 9),
		indexKey(at, 1),
		indexKey(at, 2),
		indexKey(at.Add(time.Nanosecond), 0),
		indexKey(at.Add(time.Second), 0),
	}
	for i := 1; i < len(ordered); i++ {
		if bytes.Compare(ordered[i-1], ordered[i]) >= 0 {
			t.Errorf("key %d does not sort before key %d", i-1, i)
		}
	}
	if got, ok := indexTime(indexKey(at, 7)); !ok || !got.Equal(at) {
		t.Errorf("indexTime = %v, %v", got, ok)
	}
}

// BenchmarkDeliveryCodec compares the binary record with JSON for a 4 KiB
// envelope: the reason the queue does not use JSON.
func BenchmarkDeliveryCodec(b *testing.B) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r := deliveryRecord{attempts: 1, seq: 1, created: at, visible: at,
		messageFrom: "unhcr", messageID: "0190a6f2-0000-7000-8000-000000000000", envelope: bytes.Repeat([]byte("x"), 4<<10)}
	type jsonRecord struct {
		Attempts    uint64    `json:"attempts"`
		Seq         uint64    `json:"seq"`
		Created     time.Time `json:"created"`
		Visible     time.Time `json:"visible"`
		MessageFrom string    `json:"message_from"`
		MessageID   string    `json:"message_id"`
		Envelope    []byte    `json:"envelope"`
	}
	jr := jsonRecord{r.attempts, r.seq, r.created, r.visible, r.messageFrom, r.messageID, r.envelope}
	b.Run("binary", func(b *testing.B) {
		var out deliveryRecord
		for b.Loop() {
			if err := out.unmarshal(r.marshal()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(r.marshal())), "bytes/record")
	})
	b.Run("json", func(b *testing.B) {
		var out jsonRecord
		var n int
		for b.Loop() {
			v, err := json.Marshal(&jr)
			if err != nil {
				b.Fatal(err)
			}
			n = len(v)
			if err := json.Unmarshal(v, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "bytes/record")
	})
}
