// Package https is the push adapter of PROTOCOL §4: the envelope is POSTed
// to the recipient's URL over mutual TLS with the gateway's client
// certificate, with the delivery id as Idempotency-Key. A 2xx answer means
// the recipient took responsibility; anything else, redirects included, is
// an error the delivery worker retries.
//
// The adapter refuses to reach loopback, link-local, private and other
// non-public addresses unless the participant's delivery allows it. The
// check runs on the address actually dialled, after name resolution, so a
// name that resolves (or re-resolves) to such an address is refused too.
package https

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/adapters"
)

// DefaultTimeout bounds one push when Options.Timeout is zero. The worker's
// context may end it sooner.
const DefaultTimeout = 30 * time.Second

// MaxResponseBody is how much of a recipient's answer is read (and
// discarded) so that the connection can be reused.
const MaxResponseBody = 64 << 10

// ContentType is the media type of a pushed envelope.
const ContentType = "application/jose"

// ErrForbiddenAddress is returned (wrapped) when the URL names, or its host
// resolves to, an address the push may not reach.
var ErrForbiddenAddress = errors.New("https: address not allowed")

// StatusError is returned (wrapped) when the recipient answers with a
// status other than 2xx. It carries no part of the answer's body.
type StatusError struct {
	StatusCode int
	// RetryAfter is the recipient's Retry-After, zero when absent or
	// unreadable.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("https: recipient answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Options configures a push to one recipient.
type Options struct {
	// URL is the recipient's endpoint, an absolute https:// URL.
	URL string
	// AllowPrivate lets the push reach loopback and private addresses
	// (tests, on-premise receivers).
	AllowPrivate bool
	// ClientCert is the gateway's TLS client certificate and key.
	ClientCert tls.Certificate
	// RootCAs verifies the recipient's server certificate; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// Timeout bounds one push; zero means DefaultTimeout.
	Timeout time.Duration
	// ContentType of the body; empty means ContentType (a participant's
	// edge hands plain JSON over to its own systems).
	ContentType string
}

// Push delivers envelopes to one recipient's URL. It is safe for
// concurrent use and reuses connections between deliveries.
type Push struct {
	url     string
	ctype   string
	timeout time.Duration
	client  *http.Client
}

var (
	_ adapters.Adapter = (*Push)(nil)
	_ io.Closer        = (*Push)(nil)
)

// New validates opts and returns a push adapter. A URL whose host is a
// literal address outside what opts allows is refused here; host names are
// checked on every connection.
func New(opts Options) (*Push, error) {
	var errs []error
	u, err := checkTarget(opts.URL, opts.AllowPrivate)
	if err != nil {
		errs = append(errs, err)
	}
	if len(opts.ClientCert.Certificate) == 0 || opts.ClientCert.PrivateKey == nil {
		errs = append(errs, errors.New("https: a client certificate and its key are required"))
	}
	if opts.Timeout < 0 {
		errs = append(errs, errors.New("https: timeout must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	allowPrivate := opts.AllowPrivate
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		// Control runs after resolution, on the very address about to be
		// connected to: DNS rebinding cannot slip past it.
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: unparsable address", ErrForbiddenAddress)
			}
			if !allowed(ap.Addr(), allowPrivate) {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
			}
			return nil
		},
	}
	cert := opts.ClientCert
	transport := &http.Transport{
		Proxy:       nil, // never a proxy from the environment
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    opts.RootCAs,
			// Always present the gateway's certificate; the recipient
			// decides whether it trusts it.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &cert, nil
			},
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConnsPerHost:    4,
		MaxResponseHeaderBytes: 64 << 10,
	}
	ctype := opts.ContentType
	if ctype == "" {
		ctype = ContentType
	}
	return &Push{
		url:     u.String(),
		ctype:   ctype,
		timeout: timeout,
		client: &http.Client{
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a 3xx is an answer, not a hop
			},
		},
	}, nil
}

// CheckTarget reports whether New would accept the url with allowPrivate:
// the trust registry checks every https delivery with it when it loads, so
// that a bad target is refused there, not at the first delivery.
func CheckTarget(rawURL string, allowPrivate bool) error {
	_, err := checkTarget(rawURL, allowPrivate)
	return err
}

func checkTarget(raw string, allowPrivate bool) (*url.URL, error) {
	u, err := checkURL(raw)
	if err != nil {
		return nil, err
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && !allowed(a, allowPrivate) {
		return nil, fmt.Errorf("%w: %s", ErrForbiddenAddress, a)
	}
	return u, nil
}

func checkURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("https: url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("https: url does not parse")
	}
	if u.Scheme != "https" || u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("https: url must be an absolute https:// url")
	}
	if u.User != nil {
		return nil, errors.New("https: url must not carry credentials")
	}
	if u.Fragment != "" {
		return nil, errors.New("https: url must not carry a fragment")
	}
	return u, nil
}

// Deliver POSTs the envelope to the recipient. It returns nil only on a 2xx
// answer; a non-2xx answer is a *StatusError.
func (p *Push) Deliver(ctx context.Context, d adapters.Delivery) error {
	if !validID(d.ID) {
		return errors.New("https: delivery id is not a uuid")
	}
	if len(d.Envelope) == 0 {
		return fmt.Errorf("https: delivery %s: empty envelope", d.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(d.Envelope))
	if err != nil {
		return fmt.Errorf("https: delivery %s: %w", d.ID, err)
	}
	req.Header.Set("Content-Type", p.ctype)
	req.Header.Set("Idempotency-Key", d.ID)
	req.Header.Set("User-Agent", "xborder")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("https: delivery %s: %w", d.ID, err)
	}
	// Read a bounded amount so a well-behaved connection can be reused;
	// the content is of no interest and is never logged.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBody))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("https: delivery %s: %w", d.ID, &StatusError{
			StatusCode: resp.StatusCode,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
		})
	}
	return nil
}

// Close releases idle connections.
func (p *Push) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

// validID reports whether id is a UUID in its 36-character text form, the
// only form a delivery id takes.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

// retryAfter reads a Retry-After value (delay-seconds or HTTP-date).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
