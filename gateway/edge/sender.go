package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/wire"
)

// sendWorkers bounds the messages in flight to the hub at once.
const sendWorkers = 8

// directQueue bounds the messages handed from the local API to the
// sender at once.
const directQueue = 256

// sendLoop sends what is due: each new message as the local API hands it
// over, and, at every tick (or when woken), the queued messages found in
// the outbox whose retry wait is over or whose exp has passed (and those a
// full hand-over queue or a restart left there).
func (e *Edge) sendLoop(ctx context.Context) {
	t := time.NewTicker(e.o.Tick)
	defer t.Stop()
	sem := make(chan struct{}, sendWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	// start sends o (read from the outbox when it is nil) on a worker,
	// unless it is in flight already; false when ctx ended.
	start := func(id string, o *Outgoing) bool {
		if _, busy := e.inflight.LoadOrStore(id, struct{}{}); busy {
			return true
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			e.inflight.Delete(id)
			return false
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem; e.inflight.Delete(id) }()
			if o == nil {
				var err error
				if o, err = e.store.Outgoing(id); err != nil || o.Status != StatusQueued {
					return
				}
			}
			e.attempt(ctx, o)
		}()
		return true
	}
	scan := true
	for {
		if scan {
			kick := e.kick.Swap(false)
			pending, err := e.store.Pending()
			if err != nil {
				e.log.Error("outbox read failed", "error", err)
			}
			now := e.o.Now()
			for _, d := range pending {
				// A passed exp is acted on at once (expired within a tick),
				// unless the message may have reached the hub: then its
				// confirmation waits for its backoff like any retry. When the
				// hub is back after being unreachable, nothing waits.
				if !kick && now.Before(d.NextAt) && (d.MaybeReceived || numericDate(now) < d.Exp) {
					continue
				}
				if !start(d.ID, nil) {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case o := <-e.direct:
			// Just queued: the handler's copy is the outbox's record.
			if !start(o.ID, o) {
				return
			}
			scan = false
		case <-t.C:
			scan = true
		case <-e.wake:
			scan = true
		}
	}
}

func expired(o *Outgoing, now time.Time) bool {
	return numericDate(now) >= o.Exp
}

func numericDate(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// attempt takes one step for one queued message: it expires it, or sends
// its same sealed bytes once and records the outcome.
func (e *Edge) attempt(ctx context.Context, o *Outgoing) {
	now := e.o.Now()
	if expired(o, now) && !o.MaybeReceived {
		// Never sent late: nothing of it may have reached the hub.
		e.finish(o.ID, StatusExpired, nil, map[string]any{"code": "expired", "detail": "exp passed before the hub accepted the message; it was not sent after exp"}, audit.KindExpired, nil, false, nil)
		return
	}
	if o.Sealed == nil {
		_, enc, err := e.hub.Load().GatewayKeys(ctx)
		if err != nil {
			e.hubFailed(err)
			e.retryLater(o.ID, false, nil, false)
			return
		}
		e.hubEnc.Store(enc)
		sealed, err := envelope.Encrypt(o.JWS, enc)
		if err != nil {
			e.log.Error("sealing failed", "id", o.ID, "error", err)
			e.retryLater(o.ID, false, nil, false)
			return
		}
		if _, err := e.store.Update(o.ID, func(cur *Outgoing) ([]audit.Entry, error) {
			if cur.Sealed == nil {
				cur.Sealed = sealed
			}
			o = cur
			return nil, nil
		}); err != nil {
			e.log.Error("outbox write failed", "id", o.ID, "error", err)
			return
		}
	}
	sum := sha256.Sum256(o.Sealed)
	envSHA := hex.EncodeToString(sum[:])
	first := o.Attempts == 0
	r, err := e.hub.Load().Post(ctx, o.Sealed)
	if err == nil || !isDial(err) {
		e.m.attempts.Add(1)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.hubFailed(err)
		// A refused dial carried nothing; any later failure may have.
		e.log.Warn("send failed; the same bytes go again", "id", o.ID, "reason", connReason(err))
		if isDial(err) {
			e.retryLater(o.ID, false, nil, false) // nothing left the edge
		} else {
			e.retryLater(o.ID, true, sentEntry(o, envSHA, first), true)
		}
		return
	}
	e.hubAnswered()
	switch {
	case r.Status == http.StatusOK || r.Status == http.StatusAccepted:
		e.accepted(ctx, o, r, envSHA, first)
	case r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests || r.Status >= 500:
		unknown := r.Status != http.StatusTooManyRequests && (r.Status != http.StatusServiceUnavailable || r.Problem().Detail == "outcome_unknown")
		e.log.Warn("hub asked to retry; the same bytes go again", "id", o.ID, "status", r.Status, "code", r.Problem().Code)
		e.retryAfter(o.ID, unknown, sentEntry(o, envSHA, first), retryAfter(r))
	case r.Status == http.StatusBadRequest && r.Problem().Code == string(envelope.CodeDecryptionFailed) && !o.Resealed:
		// Sealed to a hub key retired since it was read: the same signed
		// message goes again in a new envelope (PROTOCOL §3.1: the JWE
		// around it may differ), once.
		e.log.Warn("hub could not decrypt; sealing the same signed message to its current key", "id", o.ID)
		e.hub.Store(e.newHubClient())
		e.hubEnc.Store(nil)
		if _, err := e.store.Update(o.ID, func(cur *Outgoing) ([]audit.Entry, error) {
			if cur.Status != StatusQueued {
				return nil, errAlreadyFinal
			}
			cur.Sealed, cur.Resealed = nil, true
			cur.Attempts++
			if se := sentEntry(o, envSHA, first); se != nil {
				se.From = e.cfg.Participant
				return []audit.Entry{*se}, nil
			}
			return nil, nil
		}); err != nil && !errors.Is(err, errAlreadyFinal) {
			e.log.Error("outbox write failed", "id", o.ID, "error", err)
		}
	default:
		var doc map[string]any
		if json.Unmarshal(r.Body, &doc) != nil {
			doc = map[string]any{"status": r.Status, "code": "unexpected_answer"}
		}
		p := r.Problem()
		status, kind := StatusRefused, audit.KindRefused
		if p.Code == string(envelope.CodeInvalidMessage) && p.Detail == envelope.DetailExpired {
			status, kind = StatusExpired, audit.KindExpired
		}
		rules := make([]string, 0, len(p.Reasons))
		for _, rs := range p.Reasons {
			rules = append(rules, rs.Rule)
		}
		e.log.Info("hub refused the message", "id", o.ID, "status", r.Status, "code", p.Code, "decision_id", p.DecisionID, "rules", rules)
		e.finish(o.ID, status, nil, doc, kind, &audit.Entry{DecisionID: p.DecisionID, Rules: rules, Detail: p.Code}, true, sentEntry(o, envSHA, first))
	}
}

// accepted verifies the hub's receipt against what was sent, then records
// the acceptance with the receipt's digest.
func (e *Edge) accepted(ctx context.Context, o *Outgoing, r *client.Response, envSHA string, first bool) {
	var ans wire.AnswerBody
	if err := json.Unmarshal(r.Body, &ans); err != nil {
		e.log.Error("hub answer unreadable", "id", o.ID, "status", r.Status)
		e.retryAfter(o.ID, true, sentEntry(o, envSHA, first), 0)
		return
	}
	rc, err := e.hub.Load().VerifyReceipt(ctx, ans.Receipt)
	if err != nil {
		// The hub's keys may have been rotated since they were read.
		e.hub.Store(e.newHubClient())
		e.hubEnc.Store(nil)
		rc, err = e.hub.Load().VerifyReceipt(ctx, ans.Receipt)
	}
	if err == nil && (rc.ID != o.ID || rc.From != e.cfg.Participant || rc.To != o.To || rc.EnvelopeSHA256 != envSHA ||
		rc.DecisionID != ans.DecisionID || rc.PolicyVersion != ans.PolicyVersion || ans.ID != o.ID) {
		err = errors.New("the receipt does not match the message sent")
	}
	if err != nil {
		e.log.Error("hub receipt does not verify; asking again with the same bytes", "id", o.ID, "error", err)
		e.retryAfter(o.ID, true, sentEntry(o, envSHA, first), 0)
		return
	}
	rsum := sha256.Sum256([]byte(ans.Receipt))
	rec := &Receipt{DecisionID: ans.DecisionID, PolicyVersion: ans.PolicyVersion, Redacted: ans.Redacted, AcceptedAt: rc.AcceptedAt, JWS: ans.Receipt}
	e.log.Info("hub accepted the message", "id", o.ID, "decision_id", ans.DecisionID, "policy_version", ans.PolicyVersion)
	e.finish(o.ID, StatusAccepted, rec, nil, audit.KindAccepted, &audit.Entry{DecisionID: ans.DecisionID, PolicyVersion: ans.PolicyVersion,
		Redacted: ans.Redacted, PayloadSHA256: hex.EncodeToString(rsum[:])}, true, sentEntry(o, envSHA, first))
}

// sentEntry is the audit entry of the first send of a message (nil for
// the retries: the attempts are counted in the outbox).
func sentEntry(o *Outgoing, envSHA string, first bool) *audit.Entry {
	if !first {
		return nil
	}
	return &audit.Entry{Kind: audit.KindSent, MessageID: o.ID, To: o.To, Purpose: o.Purpose, Type: o.Type, PayloadSHA256: envSHA}
}

// finish records a final answer; the signed and sealed bytes are dropped.
func (e *Edge) finish(id, status string, rec *Receipt, problem any, kind string, extra *audit.Entry, didSend bool, sentE *audit.Entry) {
	_, err := e.store.Update(id, func(o *Outgoing) ([]audit.Entry, error) {
		if o.Status != StatusQueued {
			return nil, errAlreadyFinal
		}
		var entries []audit.Entry
		if didSend {
			o.Attempts++
		}
		if sentE != nil {
			sentE.From = e.cfg.Participant
			entries = append(entries, *sentE)
		}
		o.Status, o.Receipt, o.Problem = status, rec, problem
		o.JWS, o.Sealed = nil, nil
		en := audit.Entry{Kind: kind, MessageID: o.ID, From: e.cfg.Participant, To: o.To, Purpose: o.Purpose, Type: o.Type}
		if extra != nil {
			en.DecisionID, en.PolicyVersion, en.Rules, en.Redacted, en.PayloadSHA256, en.Detail =
				extra.DecisionID, extra.PolicyVersion, extra.Rules, extra.Redacted, extra.PayloadSHA256, extra.Detail
		}
		return append(entries, en), nil
	})
	if err != nil && !errors.Is(err, errAlreadyFinal) {
		e.log.Error("outbox write failed", "id", id, "error", err)
		return
	}
	if err == nil {
		switch status {
		case StatusAccepted:
			e.m.accepted.Add(1)
		case StatusRefused:
			e.m.refused.Add(1)
		case StatusExpired:
			e.m.expired.Add(1)
		}
	}
}

var errAlreadyFinal = errors.New("edge: message already has its final answer")

// retryAfter schedules the next send of the same bytes after the backoff
// (or the hub's Retry-After when longer).
func (e *Edge) retryAfter(id string, maybeReceived bool, sent *audit.Entry, hubWait time.Duration) {
	e.schedule(id, maybeReceived, sent, true, hubWait)
}

// retryLater schedules the next try when nothing was sent (sent=false) or
// the connection failed (sent=true).
func (e *Edge) retryLater(id string, maybeReceived bool, sentE *audit.Entry, sent bool) {
	e.schedule(id, maybeReceived, sentE, sent, 0)
}

func (e *Edge) schedule(id string, maybeReceived bool, sentE *audit.Entry, sent bool, hubWait time.Duration) {
	_, err := e.store.Update(id, func(o *Outgoing) ([]audit.Entry, error) {
		if o.Status != StatusQueued {
			return nil, errAlreadyFinal
		}
		var entries []audit.Entry
		if sent {
			o.Attempts++
			if sentE != nil {
				sentE.From = e.cfg.Participant
				entries = append(entries, *sentE)
			}
		}
		o.MaybeReceived = o.MaybeReceived || maybeReceived
		o.Tries++
		n := max(o.Tries, 1)
		d := time.Duration(float64(e.o.Backoff) * math.Pow(2, float64(min(n-1, 20))))
		d = min(d, e.o.MaxBackoff)
		d = d/2 + rand.N(d/2+1)
		if hubWait > d {
			d = min(hubWait, 2*e.o.MaxBackoff)
		}
		o.NextAt = e.o.Now().Add(d).UTC()
		return entries, nil
	})
	if err != nil && !errors.Is(err, errAlreadyFinal) {
		e.log.Error("outbox write failed", "id", id, "error", err)
	}
}

func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func retryAfter(r *client.Response) time.Duration {
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
