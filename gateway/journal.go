package gateway

import (
	"context"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/api"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/store"
	boltstore "github.com/xborder/xborder/gateway/store/bolt"
)

// journal writes, on the embedded store, each state change the audit log
// records together with its entry, in one transaction and one fsync: an
// acceptance or a denial (exchange.Journal), and the end of a delivery —
// acknowledged from an inbox, pushed, or dead-lettered (queue). A crash
// cannot leave one without the other, and a failed append undoes the change
// (the sender gets 503, the delivery stays queued). On Redis the chain is
// linked here, not in a script, so the entry follows the store's write.
type journal struct {
	st  *boltstore.Store
	log *audit.Log
	m   *api.Metrics
}

// journalFor is the journal of a bolt store; nil for any other store.
func journalFor(st *boltstore.Store, log *audit.Log, m *api.Metrics) *journal {
	if st == nil {
		return nil
	}
	return &journal{st: st, log: log, m: m}
}

// entry returns the function that appends e inside a store transaction.
// e is checked first, so that a bad entry fails alone instead of rolling
// back the batch it would share a commit with.
func (j *journal) entry(e audit.Entry) (func(*bbolt.Tx) error, error) {
	e = j.log.Prepare(e)
	if err := audit.CheckAppend(j.log.Replica(), e); err != nil {
		j.m.AuditFailures.Inc()
		return nil, err
	}
	return func(tx *bbolt.Tx) error {
		_, err := audit.AppendTx(tx, j.log.Replica(), e)
		return err
	}, nil
}

// Accept implements exchange.Journal.
func (j *journal) Accept(ctx context.Context, m *store.Message, ds []store.Delivery, e audit.Entry) (*store.Message, error) {
	also, err := j.entry(e)
	if err != nil {
		return nil, err
	}
	return j.st.AcceptTx(ctx, m, ds, also)
}

// RecordDenial implements exchange.Journal.
func (j *journal) RecordDenial(ctx context.Context, m *store.Message, e audit.Entry) error {
	also, err := j.entry(e)
	if err != nil {
		return err
	}
	return j.st.RecordDenialTx(ctx, m, also)
}

var _ exchange.Journal = (*journal)(nil)

// queue is the store as the inbox's and the delivery worker's queue, whose
// Ack and DeadLetter append the delivery's entry in their own transaction.
func (j *journal) queue() journalQueue { return journalQueue{Store: j.st, j: j} }

type journalQueue struct {
	*boltstore.Store
	j *journal
}

var _ store.Queue = journalQueue{}

// Ack acknowledges a delivery with its "delivered" entry.
func (q journalQueue) Ack(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return q.AckTx(ctx, recipient, deliveryID, now, q.end(audit.KindDelivered))
}

// DeadLetter gives a delivery up with its "dead_lettered" entry.
func (q journalQueue) DeadLetter(ctx context.Context, recipient, deliveryID string, now time.Time) error {
	return q.DeadLetterTx(ctx, recipient, deliveryID, now, q.end(audit.KindDeadLettered))
}

// end appends the entry of a delivery's end, built from the delivery and
// its message as the transaction sees them.
func (q journalQueue) end(kind string) boltstore.DeliveryHook {
	return func(tx *bbolt.Tx, d store.Delivery, m *store.Message) error {
		_, err := audit.AppendTx(tx, q.j.log.Replica(), q.j.log.Prepare(deliveryEntry(d, m, kind)))
		if err != nil {
			q.j.m.AuditFailures.Inc()
		}
		return err
	}
}
