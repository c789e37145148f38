// Package client is a participant's side of the wire protocol: it seals
// messages for the gateway, sends them over mTLS, verifies receipts, and
// fetches, opens and acknowledges deliveries. The CLI's send and inbox
// commands and the end-to-end tests use it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/wire"
)

// Identity is a participant's private material.
type Identity struct {
	ID      string
	TLS     tls.Certificate
	Signing *envelope.PrivateKey
	Enc     *envelope.PrivateKey
	Roots   *x509.CertPool // to verify the gateway's server certificate
}

// LoadIdentity reads a participant's development material from a PKI folder
// made by `xborder pki init` (<dir>/<ID>/tls.crt, tls.key, sign.jwk, enc.jwk
// and <dir>/ca.crt).
func LoadIdentity(dir, id string) (*Identity, error) {
	pd := filepath.Join(dir, id)
	cert, err := tls.LoadX509KeyPair(filepath.Join(pd, "tls.crt"), filepath.Join(pd, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", id, err)
	}
	sign, err := envelope.LoadPrivateJWK(filepath.Join(pd, "sign.jwk"))
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", id, err)
	}
	enc, err := envelope.LoadPrivateJWK(filepath.Join(pd, "enc.jwk"))
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", id, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("client: ca.crt holds no certificate")
	}
	return &Identity{ID: id, TLS: cert, Signing: sign, Enc: enc, Roots: roots}, nil
}

// Client talks to one gateway as one participant.
type Client struct {
	Base string // https://host:port
	Me   *Identity
	HTTP *http.Client
	// Retry, when set, retries the key fetch, the inbox and its
	// acknowledgements while the connection fails or the gateway answers
	// 503 (PostRetry takes its own).
	Retry *Retry

	mu       sync.Mutex
	gwKeys   []*envelope.PublicKey
	gwEncKey *envelope.PublicKey
}

// New makes a client with an mTLS (TLS 1.3) HTTP client.
func New(base string, me *Identity) *Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{me.TLS},
			RootCAs:      me.Roots,
		},
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{Base: base, Me: me, HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Response is a raw answer of the gateway.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem decodes a problem+json answer (zero value when it is not one).
func (r *Response) Problem() (p struct {
	Code       string `json:"code"`
	Detail     string `json:"detail"`
	DecisionID string `json:"decision_id"`
	Reasons    []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"reasons"`
}) {
	_ = json.Unmarshal(r.Body, &p)
	return p
}

// Do sends one request and reads the whole answer.
func (c *Client) Do(ctx context.Context, method, path, contentType string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// GatewayKeys fetches (once) the gateway's JWKS.
func (c *Client) GatewayKeys(ctx context.Context) ([]*envelope.PublicKey, *envelope.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gwKeys != nil {
		return c.gwKeys, c.gwEncKey, nil
	}
	r, err := c.do(ctx, http.MethodGet, "/v1/jwks", "", nil)
	if err != nil {
		return nil, nil, err
	}
	if r.Status != http.StatusOK {
		return nil, nil, fmt.Errorf("client: jwks: HTTP %d", r.Status)
	}
	keys, err := envelope.ParseJWKS(r.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("client: jwks: %w", err)
	}
	for _, k := range keys {
		if k.Use() == envelope.UseEnc {
			c.gwEncKey = k // the first listed is the current one
			break
		}
	}
	if c.gwEncKey == nil {
		return nil, nil, errors.New("client: the gateway lists no encryption key")
	}
	c.gwKeys = keys
	return keys, c.gwEncKey, nil
}

// Seal signs a message as this participant and encrypts it to the gateway.
func (c *Client) Seal(ctx context.Context, msg any) ([]byte, error) {
	payload, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	_, enc, err := c.GatewayKeys(ctx)
	if err != nil {
		return nil, err
	}
	return envelope.Seal(payload, c.Me.Signing, envelope.TypMessage, enc)
}

// Post sends an already sealed envelope.
func (c *Client) Post(ctx context.Context, sealed []byte) (*Response, error) {
	return c.Do(ctx, http.MethodPost, "/v1/messages", "application/jose", sealed)
}

// Send seals and sends a message.
func (c *Client) Send(ctx context.Context, msg any) (*Response, error) {
	sealed, err := c.Seal(ctx, msg)
	if err != nil {
		return nil, err
	}
	return c.Post(ctx, sealed)
}

func (c *Client) keyFunc(ctx context.Context) (envelope.KeyFunc, error) {
	keys, _, err := c.GatewayKeys(ctx)
	if err != nil {
		return nil, err
	}
	return func(kid string) (*envelope.PublicKey, bool) {
		for _, k := range keys {
			if k.KID() == kid && k.Use() != envelope.UseEnc {
				return k, true
			}
		}
		return nil, false
	}, nil
}

// VerifyReceipt checks a receipt against the gateway's signing keys.
func (c *Client) VerifyReceipt(ctx context.Context, receipt string) (*wire.Receipt, error) {
	kf, err := c.keyFunc(ctx)
	if err != nil {
		return nil, err
	}
	payload, _, err := envelope.Verify([]byte(receipt), envelope.TypReceipt, kf, envelope.Profile{})
	if err != nil {
		return nil, fmt.Errorf("client: receipt: %w", err)
	}
	var r wire.Receipt
	if err := json.Unmarshal(payload, &r); err != nil {
		return nil, fmt.Errorf("client: receipt: %w", err)
	}
	return &r, nil
}

// Delivery is an opened, verified delivery.
type Delivery struct {
	DeliveryID string               `json:"delivery_id"`
	MessageID  string               `json:"message_id"`
	Payload    wire.DeliveryPayload `json:"payload"`
}

// Inbox fetches up to max deliveries, and decrypts and verifies each.
func (c *Client) Inbox(ctx context.Context, max int) ([]Delivery, error) {
	r, err := c.do(ctx, http.MethodGet, "/v1/inbox?max="+strconv.Itoa(max), "", nil)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("client: inbox: HTTP %d %s", r.Status, r.Problem().Code)
	}
	var list struct {
		Deliveries []struct {
			DeliveryID string `json:"delivery_id"`
			MessageID  string `json:"message_id"`
			Envelope   string `json:"envelope"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		return nil, fmt.Errorf("client: inbox: %w", err)
	}
	out := make([]Delivery, 0, len(list.Deliveries))
	for _, d := range list.Deliveries {
		p, err := c.OpenDelivery(ctx, []byte(d.Envelope))
		if err != nil {
			return nil, fmt.Errorf("client: delivery %s: %w", d.DeliveryID, err)
		}
		if p.DeliveryID != d.DeliveryID {
			return nil, fmt.Errorf("client: delivery %s: signed delivery_id differs", d.DeliveryID)
		}
		out = append(out, Delivery{DeliveryID: d.DeliveryID, MessageID: d.MessageID, Payload: *p})
	}
	return out, nil
}

// OpenDelivery decrypts a delivery envelope with this participant's key and
// verifies the gateway's signature.
func (c *Client) OpenDelivery(ctx context.Context, jwe []byte) (*wire.DeliveryPayload, error) {
	jws, err := envelope.Decrypt(jwe, []*envelope.PrivateKey{c.Me.Enc}, envelope.Profile{})
	if err != nil {
		return nil, err
	}
	kf, err := c.keyFunc(ctx)
	if err != nil {
		return nil, err
	}
	payload, _, err := envelope.Verify(jws, envelope.TypDelivery, kf, envelope.Profile{})
	if err != nil {
		return nil, err
	}
	var p wire.DeliveryPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Ack acknowledges a delivery.
func (c *Client) Ack(ctx context.Context, deliveryID string) error {
	r, err := c.do(ctx, http.MethodPost, "/v1/inbox/"+deliveryID+"/ack", "", nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusNoContent {
		return fmt.Errorf("client: ack: HTTP %d %s", r.Status, r.Problem().Code)
	}
	return nil
}
