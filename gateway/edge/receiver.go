package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/adapters/file"
	httpsadapter "github.com/xborder/xborder/adapters/https"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/trust"
	"github.com/xborder/xborder/gateway/wire"
)

// inboxBatch is how many deliveries one pull asks the hub for.
const inboxBatch = 20

// HandOver is the document the participant's systems receive.
type HandOver struct {
	DeliveryID string          `json:"delivery_id"`
	Message    map[string]any  `json:"message"`
	Provenance wire.Provenance `json:"provenance"`
}

// handOver takes a document to the participant's systems; nil for the
// local inbox (the store keeps it).
type handOver adapters.Adapter

func newHandOver(deliver string, me *client.Identity, reg *trust.Registry) (handOver, error) {
	switch {
	case deliver == "local":
		return nil, nil
	case strings.HasPrefix(deliver, "file:"):
		d, err := file.NewWithExt(strings.TrimPrefix(deliver, "file:"), ".json")
		if err != nil {
			return nil, fmt.Errorf("edge: deliver: %w", err)
		}
		return d, nil
	case strings.HasPrefix(deliver, "https://"):
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		for _, a := range reg.Anchors() {
			roots.AddCert(a)
		}
		p, err := httpsadapter.New(httpsadapter.Options{URL: deliver, AllowPrivate: true, ClientCert: me.TLS,
			RootCAs: roots, ContentType: "application/json"})
		if err != nil {
			return nil, fmt.Errorf("edge: deliver: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("edge: deliver: %q is neither local, file:DIR nor https://…", deliver)
}

// receiveLoop pulls the participant's inbox from the hub: at once again
// after a full batch, else after the poll interval.
func (e *Edge) receiveLoop(ctx context.Context) {
	for {
		n, err := e.pull(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.Debug("inbox pull failed", "reason", err.Error())
		}
		wait := e.o.Poll
		if n >= inboxBatch {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

type listing struct {
	Deliveries []struct {
		DeliveryID string `json:"delivery_id"`
		MessageID  string `json:"message_id"`
		Envelope   string `json:"envelope"`
	} `json:"deliveries"`
}

func (e *Edge) pull(ctx context.Context) (int, error) {
	r, err := e.hub.Load().Do(ctx, http.MethodGet, fmt.Sprintf("/v1/inbox?max=%d", inboxBatch), "", nil)
	if err != nil {
		e.hubFailed(err)
		return 0, errors.New(connReason(err))
	}
	e.hubAnswered()
	if r.Status != http.StatusOK {
		e.lastHubErr.Store(fmt.Sprintf("the hub answers the inbox with HTTP %d %s", r.Status, r.Problem().Code))
		return 0, fmt.Errorf("inbox: HTTP %d %s", r.Status, r.Problem().Code)
	}
	var l listing
	if err := json.Unmarshal(r.Body, &l); err != nil {
		return 0, errors.New("inbox: the hub's listing does not parse")
	}
	for _, d := range l.Deliveries {
		if ctx.Err() != nil {
			break
		}
		e.receive(ctx, d.DeliveryID, []byte(d.Envelope))
	}
	return len(l.Deliveries), nil
}

// receive verifies, hands over and acknowledges one delivery. The hub is
// acknowledged only once the hand-over (or the quarantine) is durable; a
// failure leaves it at the hub, which offers it again.
func (e *Edge) receive(ctx context.Context, deliveryID string, env []byte) {
	if !envelope.IsUUID(deliveryID) {
		e.log.Warn("hub listed a delivery without a valid id; left unacknowledged")
		return
	}
	deliveryID = strings.ToLower(deliveryID)
	if e.store.Handed(deliveryID) {
		e.ackHub(ctx, deliveryID)
		return
	}
	p, err := e.open(ctx, deliveryID, env)
	if err != nil {
		// Perhaps the hub's keys changed since they were read: once more
		// with fresh ones before calling it bad.
		e.hub.Store(e.newHubClient())
		e.hubEnc.Store(nil)
		p, err = e.open(ctx, deliveryID, env)
	}
	sum := sha256.Sum256(env)
	envSHA := hex.EncodeToString(sum[:])
	if err != nil {
		if errors.Is(err, errHubUnreachable) {
			return
		}
		reason := err.Error()
		if qerr := e.store.Quarantine(quarantined{DeliveryID: deliveryID, Reason: reason, At: e.o.Now().UTC(), Envelope: string(env)},
			audit.Entry{Kind: audit.KindQuarantined, To: e.cfg.Participant, PayloadSHA256: envSHA, Detail: reason}); qerr != nil {
			e.log.Error("quarantine write failed; left at the hub", "delivery_id", deliveryID, "error", qerr)
			return
		}
		e.m.quarantined.Add(1)
		e.log.Warn("delivery failed verification: quarantined, not handed over", "delivery_id", deliveryID, "reason", reason)
		e.ackHub(ctx, deliveryID)
		return
	}
	msg := p.Message
	msgID, _ := msg["id"].(string)
	from, _ := msg["from"].(string)
	purpose, _ := msg["purpose"].(string)
	typ, _ := msg["type"].(string)
	base := audit.Entry{MessageID: msgID, DecisionID: p.Provenance.DecisionID, PolicyVersion: p.Provenance.PolicyVersion,
		From: from, To: e.cfg.Participant, Purpose: purpose, Type: typ, PayloadSHA256: envSHA, Redacted: p.Provenance.Redacted}
	received, handed := base, base
	received.Kind, handed.Kind = audit.KindReceived, audit.KindHandedOver
	doc, err := json.Marshal(HandOver{DeliveryID: deliveryID, Message: msg, Provenance: p.Provenance})
	if err != nil {
		e.log.Error("hand-over document could not be encoded", "delivery_id", deliveryID)
		return
	}
	var local []byte
	if hand := e.handOver(); hand == nil {
		local = doc
	} else {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := hand.Deliver(hctx, adapters.Delivery{ID: deliveryID, Recipient: e.cfg.Participant, MessageID: msgID, Envelope: doc})
		cancel()
		if err != nil {
			e.m.handoverFailures.Add(1)
			e.log.Warn("hand-over failed; the hub offers it again", "delivery_id", deliveryID, "deliver", deliverKind(e.cfg.Deliver), "error", err)
			return
		}
	}
	if err := e.store.MarkHanded(deliveryID, local, received, handed); err != nil {
		e.log.Error("hand-over record failed; the hub offers it again", "delivery_id", deliveryID, "error", err)
		return
	}
	e.m.handovers.Add(1)
	e.log.Info("delivery handed over", "delivery_id", deliveryID, "message_id", msgID, "from", from, "purpose", purpose, "type", typ, "deliver", deliverKind(e.cfg.Deliver))
	e.ackHub(ctx, deliveryID)
}

func (e *Edge) ackHub(ctx context.Context, deliveryID string) {
	r, err := e.hub.Load().Do(ctx, http.MethodPost, "/v1/inbox/"+deliveryID+"/ack", "", nil)
	if err != nil {
		e.hubFailed(err)
		return
	}
	e.hubAnswered()
	if r.Status != http.StatusNoContent && r.Status != http.StatusNotFound {
		e.log.Warn("hub refused the acknowledgement", "delivery_id", deliveryID, "status", r.Status, "code", r.Problem().Code)
	}
}

var errHubUnreachable = errors.New("the hub's keys could not be read")

// open decrypts a delivery with the participant's key, verifies the hub's
// signature and checks the provenance (PROTOCOL §4): the signed
// delivery_id is the listed one, the message is for this participant,
// its sender is registered, and the sender's key named in the provenance is
// one of the sender's keys in the registry.
func (e *Edge) open(ctx context.Context, deliveryID string, env []byte) (*wire.DeliveryPayload, error) {
	hub := e.hub.Load()
	if _, _, err := hub.GatewayKeys(ctx); err != nil {
		e.hubFailed(err)
		return nil, errHubUnreachable
	}
	p, err := hub.OpenDelivery(ctx, env)
	if err != nil {
		return nil, errors.New("the envelope does not decrypt or the hub's signature does not verify")
	}
	if !strings.EqualFold(p.DeliveryID, deliveryID) {
		return nil, errors.New("the signed delivery_id differs from the listed one")
	}
	m := p.Message
	if m == nil {
		return nil, errors.New("the delivery carries no message")
	}
	if to, _ := m["to"].(string); to != e.cfg.Participant {
		return nil, errors.New("the message is not addressed to this participant")
	}
	from, _ := m["from"].(string)
	sender, ok := e.registry().Participant(from)
	if !ok {
		return nil, errors.New("the sender is not in the registry")
	}
	if id, _ := m["id"].(string); !envelope.IsUUID(id) {
		return nil, errors.New("the message has no valid id")
	}
	pv := p.Provenance
	if owner, _, ok := e.registry().SigningKey(pv.SenderKID); !ok || owner != sender.ID {
		return nil, errors.New("provenance.sender_kid is not a signing key of the sender")
	}
	if len(pv.SenderJWSSHA256) != 64 || !isHex(pv.SenderJWSSHA256) {
		return nil, errors.New("provenance.sender_jws_sha256 is not a SHA-256 digest")
	}
	if !envelope.IsUUID(pv.DecisionID) || pv.PolicyVersion == "" {
		return nil, errors.New("provenance lacks its decision")
	}
	if _, err := time.Parse(time.RFC3339, pv.ReceivedAt); err != nil {
		return nil, errors.New("provenance.received_at is not RFC 3339")
	}
	for _, path := range pv.Redacted {
		if strings.Contains(path, "..") || path == "" {
			return nil, errors.New("provenance.redacted holds an invalid path")
		}
	}
	return p, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && bytes.Equal([]byte(strings.ToLower(s)), []byte(s))
}
