package trust_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

// newPKI makes a development PKI for the given participant ids in a fresh
// temporary folder and returns the folder.
func newPKI(t *testing.T, ids ...string) string {
	t.Helper()
	specs, err := pki.SpecsFor(ids)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := pki.Init(pki.Options{Dir: dir, Participants: specs}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustLoad(t *testing.T, path string) *trust.Registry {
	t.Helper()
	r, err := trust.Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return r
}

func readRegistryFile(t *testing.T, path string) *trust.File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := trust.DecodeFile(data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func writeRegistryFile(t *testing.T, path string, f *trust.File) {
	t.Helper()
	data, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// problems splits an errors.Join result into its problems.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// ca is a certificate authority for tests.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// loadCA reads the CA of a pki.Init folder.
func loadCA(t *testing.T, dir string) ca {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, pki.CAKey))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca{cert: pair.Leaf, key: pair.PrivateKey.(*ecdsa.PrivateKey)}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return s.Add(s, big.NewInt(1))
}

func create(t *testing.T, tmpl, parent *x509.Certificate, pub, signer any) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newRootCA makes a throwaway self-signed CA.
func newRootCA(t *testing.T, cn string) ca {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	return ca{cert: create(t, tmpl, tmpl, &k.PublicKey, k), key: k}
}

// intermediate issues a subordinate CA.
func (c ca) intermediate(t *testing.T, cn string) ca {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	return ca{cert: create(t, tmpl, c.cert, &k.PublicKey, c.key), key: k}
}

// leafOpts tweak a client certificate.
type leafOpts struct {
	cn        string
	uris      []string
	eku       []x509.ExtKeyUsage // default client auth
	notBefore time.Time
	notAfter  time.Time
}

// leaf issues a client certificate and returns it with its key.
func (c ca) leaf(t *testing.T, o leafOpts) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: o.cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if o.eku != nil {
		tmpl.ExtKeyUsage = o.eku
	}
	if !o.notBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = o.notBefore, o.notAfter
	}
	for _, s := range o.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return create(t, tmpl, c.cert, &k.PublicKey, c.key), k
}

// tlsCert pairs a certificate chain with its key for a TLS client.
func tlsCert(key *ecdsa.PrivateKey, chain ...*x509.Certificate) tls.Certificate {
	out := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

func writePEM(t *testing.T, path string, c *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeJWK writes a fresh public (or private) JWK for use and returns its
// kid.
func writeJWK(t *testing.T, path, use string, private bool) string {
	t.Helper()
	k, err := envelope.GenerateP256(use)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	if private {
		data, err = k.MarshalJSON()
	} else {
		data, err = k.Public().MarshalJSON()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return k.KID()
}

// thumbprint computes the RFC 7638 thumbprint of a P-256 key independently
// of the code under test.
func thumbprint(t *testing.T, pub *ecdsa.PublicKey) (x, y, kid string) {
	t.Helper()
	b, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	x = base64.RawURLEncoding.EncodeToString(b[1:33])
	y = base64.RawURLEncoding.EncodeToString(b[33:65])
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, x, y)
	sum := sha256.Sum256([]byte(canon))
	return x, y, base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwkFor writes a hand-made public JWK (as any other tool would) with a kid
// that is not the thumbprint.
func jwkFor(t *testing.T, path string, pub *ecdsa.PublicKey, use string) string {
	t.Helper()
	x, y, kid := thumbprint(t, pub)
	data, err := json.Marshal(map[string]string{
		"kty": "EC", "crv": "P-256", "x": x, "y": y, "use": use, "kid": "label-chosen-by-the-tool",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return kid
}

// handshake runs one real TLS handshake on 127.0.0.1 and returns the
// server's view of the connection and both sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte("k"))
		done <- result{state: tc.ConnectionState(), err: err}
	}()

	dialer := &tls.Dialer{Config: client}
	conn, err := dialer.Dial("tcp", ln.Addr().String())
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// In TLS 1.3 the server judges the client certificate after the
		// client has finished: its verdict arrives with the first read.
		buf := make([]byte, 1)
		_, err = conn.Read(buf)
		conn.Close()
	}
	res := <-done
	return res.state, res.err, err
}

// clientConfig trusts the CA of a pki.Init folder for the server and
// presents cert (if any).
func clientConfig(t *testing.T, dir string, cert *tls.Certificate) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, pki.CACert)))
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func loadPair(t *testing.T, dir, who string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, who, pki.TLSCert), filepath.Join(dir, who, pki.TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}
