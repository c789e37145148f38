package kvstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/xborder/xborder/gateway/store"
)

// A queued delivery is kept in a compact binary record rather than JSON: the
// envelope (up to the body limit) is stored raw instead of base64, and a
// lease rewrites the record, so encoding cost matters. Its recipient and id
// are the record's key and are not repeated.
//
//	version        byte (1)
//	attempts       uvarint
//	seq            uvarint  (position in the queue among equal visible times)
//	created        time
//	visible        time
//	message_from   uvarint length + bytes
//	message_id     uvarint length + bytes
//	envelope       uvarint length + bytes
//
// A time is a varint of Unix seconds and a uvarint of nanoseconds, so the
// zero time survives the round trip.
type deliveryRecord struct {
	attempts    uint64
	seq         uint64
	created     time.Time
	visible     time.Time
	messageFrom string
	messageID   string
	envelope    []byte
}

// delivery is the record as the store's callers see it.
func (r *deliveryRecord) delivery(recipient, id string) store.Delivery {
	return store.Delivery{ID: id, Recipient: recipient, MessageFrom: r.messageFrom, MessageID: r.messageID,
		Envelope: r.envelope, Attempts: int(r.attempts), CreatedAt: r.created, VisibleAt: r.visible}
}

const recordVersion = 1

var errCorrupt = errors.New("kvstore: corrupt delivery record")

func (r *deliveryRecord) marshal() []byte {
	n := 1 + 3*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 +
		3*binary.MaxVarintLen64 + len(r.messageFrom) + len(r.messageID) + len(r.envelope)
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.attempts)
	b = binary.AppendUvarint(b, r.seq)
	b = appendTime(b, r.created)
	b = appendTime(b, r.visible)
	b = appendBytes(b, []byte(r.messageFrom))
	b = appendBytes(b, []byte(r.messageID))
	b = appendBytes(b, r.envelope)
	return b
}

// unmarshal decodes b. The envelope is copied: b belongs to a bbolt
// transaction and is invalid once it ends.
func (r *deliveryRecord) unmarshal(b []byte) error {
	if len(b) == 0 || b[0] != recordVersion {
		return errCorrupt
	}
	d := decoder{b: b[1:]}
	r.attempts = d.uvarint()
	r.seq = d.uvarint()
	r.created = d.time()
	r.visible = d.time()
	r.messageFrom = string(d.bytes())
	r.messageID = string(d.bytes())
	r.envelope = append([]byte(nil), d.bytes()...)
	if d.err || len(d.b) != 0 {
		return errCorrupt
	}
	return nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.err = true
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// indexKey orders a recipient's queue by visible time, then by the order
// deliveries were enqueued: 8 bytes of Unix seconds (sign bit flipped so that
// the byte order is the numeric order), 4 bytes of nanoseconds, 8 bytes of
// sequence.
func indexKey(visible time.Time, seq uint64) []byte {
	k := make([]byte, 20)
	binary.BigEndian.PutUint64(k[0:8], uint64(visible.Unix())^(1<<63))
	binary.BigEndian.PutUint32(k[8:12], uint32(visible.Nanosecond()))
	binary.BigEndian.PutUint64(k[12:20], seq)
	return k
}

// indexTime is the visible time of an index key.
func indexTime(k []byte) (time.Time, bool) {
	if len(k) != 20 {
		return time.Time{}, false
	}
	return keyTime(k)
}

// keyTime decodes the 12 time bytes that start an index or retention key.
func keyTime(k []byte) (time.Time, bool) {
	if len(k) < 12 {
		return time.Time{}, false
	}
	sec := int64(binary.BigEndian.Uint64(k[0:8]) ^ (1 << 63))
	nsec := binary.BigEndian.Uint32(k[8:12])
	if nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(sec, int64(nsec)).UTC(), true
}
