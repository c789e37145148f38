package https_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xborder/xborder/adapters"
	"github.com/xborder/xborder/adapters/adaptertest"
	"github.com/xborder/xborder/adapters/https"
)

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial atomic.Int64

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{cert: cert, key: key, pool: pool}
}

// issue makes a leaf for a server (with the names and addresses it answers
// on) or a client.
func (c *ca) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// pki is what every test needs: the federation's CA, the gateway's client
// certificate and the recipient's server certificate.
type pki struct {
	ca      *ca
	gateway tls.Certificate
	server  tls.Certificate
}

func testPKI(t *testing.T) pki {
	t.Helper()
	c := newCA(t, "xborder test CA")
	return pki{ca: c, gateway: c.issue(t, "gateway", false), server: c.issue(t, "recipient", true)}
}

// recipient is an mTLS server on 127.0.0.1 that records what it accepts.
type recipient struct {
	srv    *httptest.Server
	refuse atomic.Bool
	conns  atomic.Int64 // TCP connections accepted

	mu       sync.Mutex
	received []adapters.Delivery
	headers  []http.Header
	tlsState []tls.ConnectionState
}

// startRecipient starts a recipient whose handler, when not nil, answers
// instead of the recording one.
func startRecipient(t *testing.T, p pki, handler http.HandlerFunc) *recipient {
	t.Helper()
	r := &recipient{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		if handler != nil {
			handler(w, req)
			return
		}
		r.record(w, req)
	})
	r.srv = httptest.NewUnstartedServer(mux)
	r.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	r.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.conns.Add(1)
		}
	}
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recipient) record(w http.ResponseWriter, req *http.Request) {
	if r.refuse.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if req.Method != http.MethodPost {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if req.Header.Get("Content-Type") != https.ContentType {
		http.Error(w, "media type", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 2<<20))
	if err != nil {
		http.Error(w, "body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.received = append(r.received, adapters.Delivery{ID: req.Header.Get("Idempotency-Key"), Envelope: body})
	r.headers = append(r.headers, req.Header.Clone())
	r.tlsState = append(r.tlsState, *req.TLS)
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (r *recipient) deliveries() []adapters.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]adapters.Delivery(nil), r.received...)
}

func (r *recipient) url(t *testing.T, host, path string) string {
	t.Helper()
	u, err := url.Parse(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		u.Host = net.JoinHostPort(host, u.Port())
	}
	u.Path = path
	return u.String()
}

func newPush(t *testing.T, opts https.Options) *https.Push {
	t.Helper()
	p, err := https.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	p := testPKI(t)
	adaptertest.Run(t, adaptertest.Harness{New: func(t *testing.T) adaptertest.Target {
		r := startRecipient(t, p, nil)
		push := newPush(t, https.Options{
			URL: r.url(t, "", "/v1/deliveries"), AllowPrivate: true,
			ClientCert: p.gateway, RootCAs: p.ca.pool, Timeout: 5 * time.Second,
		})
		return adaptertest.Target{
			Adapter:  push,
			Received: func(*testing.T) []adapters.Delivery { return r.deliveries() },
			Fail:     func(_ *testing.T, on bool) { r.refuse.Store(on) },
		}
	}})
}

func TestNew(t *testing.T) {
	p := testPKI(t)
	for _, tc := range []struct {
		name      string
		opts      https.Options
		wantErr   string
		forbidden bool
	}{
		{name: "public host name", opts: https.Options{URL: "https://recipient.example.org/v1/deliveries"}},
		{name: "public literal address", opts: https.Options{URL: "https://8.8.8.8/in"}},
		{name: "public IPv6 literal", opts: https.Options{URL: "https://[2606:4700::1111]:8443/in"}},
		{name: "loopback allowed when private is", opts: https.Options{URL: "https://127.0.0.1:8443/", AllowPrivate: true}},
		{name: "private allowed when private is", opts: https.Options{URL: "https://10.1.2.3/", AllowPrivate: true}},
		{name: "empty url", opts: https.Options{}, wantErr: "url is required"},
		{name: "http url", opts: https.Options{URL: "http://recipient.example.org/in"}, wantErr: "https://"},
		{name: "no scheme", opts: https.Options{URL: "recipient.example.org/in"}, wantErr: "https://"},
		{name: "no host", opts: https.Options{URL: "https:///in"}, wantErr: "https://"},
		{name: "credentials in url", opts: https.Options{URL: "https://u:p@recipient.example.org/"}, wantErr: "credentials"},
		{name: "unparsable url", opts: https.Options{URL: "https://[::1"}, wantErr: "does not parse"},
		{name: "loopback literal", opts: https.Options{URL: "https://127.0.0.1:8443/"}, forbidden: true},
		{name: "loopback other than .1", opts: https.Options{URL: "https://127.9.9.9/"}, forbidden: true},
		{name: "IPv6 loopback", opts: https.Options{URL: "https://[::1]:8443/"}, forbidden: true},
		{name: "IPv4-mapped loopback", opts: https.Options{URL: "https://[::ffff:127.0.0.1]/"}, forbidden: true},
		{name: "RFC 1918 10/8", opts: https.Options{URL: "https://10.0.0.1/"}, forbidden: true},
		{name: "RFC 1918 172.16/12", opts: https.Options{URL: "https://172.31.255.1/"}, forbidden: true},
		{name: "RFC 1918 192.168/16", opts: https.Options{URL: "https://192.168.1.1/"}, forbidden: true},
		{name: "cloud metadata", opts: https.Options{URL: "https://169.254.169.254/latest"}, forbidden: true},
		{name: "CGNAT", opts: https.Options{URL: "https://100.64.0.1/"}, forbidden: true},
		{name: "ULA", opts: https.Options{URL: "https://[fd00::1]/"}, forbidden: true},
		{name: "IPv6 link-local with zone", opts: https.Options{URL: "https://[fe80::1%25eth0]/"}, forbidden: true},
		{name: "unspecified", opts: https.Options{URL: "https://0.0.0.0/"}, forbidden: true},
		{name: "unspecified even with private", opts: https.Options{URL: "https://0.0.0.0/", AllowPrivate: true}, forbidden: true},
		{name: "multicast", opts: https.Options{URL: "https://224.0.0.1/"}, forbidden: true},
		{name: "NAT64 of a private address", opts: https.Options{URL: "https://[64:ff9b::a00:1]/"}, forbidden: true},
		{name: "negative timeout", opts: https.Options{URL: "https://recipient.example.org/", Timeout: -time.Second}, wantErr: "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.ClientCert.Certificate == nil {
				tc.opts.ClientCert = p.gateway
			}
			push, err := https.New(tc.opts)
			switch {
			case tc.forbidden:
				if !errors.Is(err, https.ErrForbiddenAddress) {
					t.Fatalf("New = %v, want ErrForbiddenAddress", err)
				}
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New = %v, want an error containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("New = %v, want nil", err)
			default:
				_ = push.Close()
			}
			if err != nil && !strings.HasPrefix(err.Error(), "https: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		_, err := https.New(https.Options{URL: "https://recipient.example.org/"})
		if err == nil || !strings.Contains(err.Error(), "client certificate") {
			t.Fatalf("New = %v, want a client certificate error", err)
		}
	})
}

// TestDialTimeCheck: a host name is checked on the address it resolves to,
// when the connection is made.
func TestDialTimeCheck(t *testing.T) {
	p := testPKI(t)
	r := startRecipient(t, p, nil)
	for _, tc := range []struct {
		name         string
		host         string
		allowPrivate bool
		wantErr      bool
	}{
		{name: "localhost refused", host: "localhost", wantErr: true},
		{name: "localhost allowed with private", host: "localhost", allowPrivate: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.conns.Load()
			push := newPush(t, https.Options{
				URL: r.url(t, tc.host, "/in"), AllowPrivate: tc.allowPrivate,
				ClientCert: p.gateway, RootCAs: p.ca.pool,
			})
			err := push.Deliver(ctx10s(t), adaptertest.NewDelivery(t, 64))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Deliver = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, https.ErrForbiddenAddress) {
				t.Fatalf("Deliver = %v, want ErrForbiddenAddress", err)
			}
			if n := r.conns.Load() - before; n != 0 {
				t.Errorf("recipient saw %d connections, want 0", n)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	p := testPKI(t)
	for _, tc := range []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantOK     bool
		retryAfter time.Duration
	}{
		{name: "200", status: 200, wantOK: true},
		{name: "201", status: 201, wantOK: true},
		{name: "202", status: 202, wantOK: true},
		{name: "204", status: 204, wantOK: true},
		{name: "2xx with a large body", status: 200, body: strings.Repeat("x", 1<<20), wantOK: true},
		{name: "301", status: 301, header: map[string]string{"Location": "/moved"}},
		{name: "304", status: 304},
		{name: "400", status: 400, body: "bad request"},
		{name: "401", status: 401},
		{name: "404", status: 404},
		{name: "409", status: 409},
		{name: "413", status: 413},
		{name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "7"}, retryAfter: 7 * time.Second},
		{name: "500", status: 500},
		{name: "503 with a bad Retry-After", status: 503, header: map[string]string{"Retry-After": "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRecipient(t, p, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: p.gateway, RootCAs: p.ca.pool})
			err := push.Deliver(ctx10s(t), adaptertest.NewDelivery(t, 64))
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Deliver = %v, want nil", err)
				}
				return
			}
			var se *https.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Deliver = %v, want a *StatusError", err)
			}
			if se.StatusCode != tc.status || se.RetryAfter != tc.retryAfter {
				t.Errorf("StatusError = {%d %v}, want {%d %v}", se.StatusCode, se.RetryAfter, tc.status, tc.retryAfter)
			}
			if tc.body != "" && strings.Contains(err.Error(), tc.body) {
				t.Errorf("error %q carries the answer's body", err)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	p := testPKI(t)
	var target atomic.Int64
	r := startRecipient(t, p, func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/elsewhere" {
			target.Add(1)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		http.Redirect(w, req, "/elsewhere", http.StatusTemporaryRedirect)
	})
	push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: p.gateway, RootCAs: p.ca.pool})
	err := push.Deliver(ctx10s(t), adaptertest.NewDelivery(t, 64))
	var se *https.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("Deliver = %v, want a *StatusError with 307", err)
	}
	if n := target.Load(); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
}

func TestRequest(t *testing.T) {
	p := testPKI(t)
	r := startRecipient(t, p, nil)
	push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: p.gateway, RootCAs: p.ca.pool})
	d := adaptertest.NewDelivery(t, 128)
	if err := push.Deliver(ctx10s(t), d); err != nil {
		t.Fatalf("Deliver = %v", err)
	}
	r.mu.Lock()
	h, st := r.headers[0], r.tlsState[0]
	r.mu.Unlock()
	for _, tc := range []struct{ name, got, want string }{
		{"Content-Type", h.Get("Content-Type"), "application/jose"},
		{"Idempotency-Key", h.Get("Idempotency-Key"), d.ID},
		{"Cookie", h.Get("Cookie"), ""},
		{"Authorization", h.Get("Authorization"), ""},
		{"client certificate", st.PeerCertificates[0].Subject.CommonName, "gateway"},
		{"TLS 1.3", tls.VersionName(st.Version), tls.VersionName(tls.VersionTLS13)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestTLS: the handshake fails, and nothing is delivered, unless both
// sides prove who they are.
func TestTLS(t *testing.T) {
	p := testPKI(t)
	other := newCA(t, "someone else's CA")
	for _, tc := range []struct {
		name    string
		client  tls.Certificate
		roots   *x509.CertPool
		server  *tls.Config // overrides the recipient's defaults when set
		wantErr bool
	}{
		{name: "both verified", client: p.gateway, roots: p.ca.pool},
		{name: "client certificate from an untrusted CA", client: other.issue(t, "gateway", false), roots: p.ca.pool, wantErr: true},
		{name: "server from an untrusted CA", client: p.gateway, roots: other.pool, wantErr: true},
		{name: "system roots do not know the test CA", client: p.gateway, roots: nil, wantErr: true},
		{name: "server offers only TLS 1.1", client: p.gateway, roots: p.ca.pool, wantErr: true, server: &tls.Config{
			Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.ca.pool,
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *recipient
			if tc.server != nil {
				r = startRecipientTLS(t, tc.server)
			} else {
				r = startRecipient(t, p, nil)
			}
			push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: tc.client, RootCAs: tc.roots})
			err := push.Deliver(ctx10s(t), adaptertest.NewDelivery(t, 64))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Deliver = %v, want error %v", err, tc.wantErr)
			}
			if want := map[bool]int{true: 0, false: 1}[tc.wantErr]; len(r.deliveries()) != want {
				t.Errorf("recipient holds %d deliveries, want %d", len(r.deliveries()), want)
			}
		})
	}
}

func startRecipientTLS(t *testing.T, cfg *tls.Config) *recipient {
	t.Helper()
	r := &recipient{}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.record))
	r.srv.TLS = cfg
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

// TestHungRecipient: a recipient that never answers cannot hold the worker
// past its context or the adapter's timeout.
func TestHungRecipient(t *testing.T) {
	p := testPKI(t)
	release := make(chan struct{})
	r := startRecipient(t, p, func(_ http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // the worker's per-attempt deadline
	}{
		{name: "worker deadline", timeout: time.Minute, ctx: 200 * time.Millisecond},
		{name: "adapter timeout", timeout: 200 * time.Millisecond, ctx: time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: p.gateway, RootCAs: p.ca.pool, Timeout: tc.timeout})
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			err := push.Deliver(ctx, adaptertest.NewDelivery(t, 64))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Deliver took %v", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Deliver = %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

// TestConnectionReuse: deliveries to one recipient share a connection.
func TestConnectionReuse(t *testing.T) {
	p := testPKI(t)
	r := startRecipient(t, p, nil)
	push := newPush(t, https.Options{URL: r.url(t, "", "/in"), AllowPrivate: true, ClientCert: p.gateway, RootCAs: p.ca.pool})
	for range 5 {
		if err := push.Deliver(ctx10s(t), adaptertest.NewDelivery(t, 64)); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
	}
	if n := r.conns.Load(); n != 1 {
		t.Errorf("recipient saw %d connections for 5 deliveries, want 1", n)
	}
}
