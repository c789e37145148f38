// Package pki generates the development PKI of PROTOCOL §8: a CA, the
// gateway's TLS certificate and JOSE keys, and for each participant a TLS
// client certificate, signing and encryption JWKs, and the registry.yaml that
// lists them. The material is for development only and is never committed.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/trust"
)

// File and directory names inside the PKI folder.
const (
	RegistryFile = "registry.yaml"
	CACert       = "ca.crt"
	CAKey        = "ca.key"
	GatewayDir   = "gateway"
	TLSCert      = "tls.crt"
	TLSKey       = "tls.key"
	AuditKey     = "audit.key"
	SignJWK      = "sign.jwk"
	EncJWK       = "enc.jwk"
	SignPubJWK   = "sign.pub.jwk"
	EncPubJWK    = "enc.pub.jwk"
)

// GatewayCN is the Subject CN of the gateway's certificate.
const GatewayCN = "xborder-gateway"

// Validity of every generated certificate.
const (
	backdate = time.Hour
	lifetime = 2 * 365 * 24 * time.Hour
)

// DefaultGatewayHosts are the names the gateway certificate is valid for
// when Options.GatewayHosts is empty.
func DefaultGatewayHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// Options configure Init.
type Options struct {
	// Dir receives the material; it is created (mode 0700) if missing.
	Dir string
	// Participants to generate; empty means DemoFederation().
	Participants []Spec
	// Force regenerates everything even if Dir already holds a registry.
	Force bool
	// GatewayHosts are DNS names and IP addresses for the gateway
	// certificate; empty means DefaultGatewayHosts().
	GatewayHosts []string
}

// Ensure makes the demo federation's PKI in dir if dir holds no registry yet.
func Ensure(dir string) error { return Init(Options{Dir: dir}) }

// Init writes the development PKI into opts.Dir. If the folder already holds
// a registry.yaml and Force is false, it does nothing and returns nil. The
// registry is written last, so an interrupted run is redone by the next one.
// Everything is generated and validated against the trust registry rules
// before any file is written.
func Init(opts Options) error {
	if opts.Dir == "" {
		return errors.New("pki: no directory given")
	}
	regPath := filepath.Join(opts.Dir, RegistryFile)
	if !opts.Force {
		_, err := os.Stat(regPath)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: %w", err)
		}
	}
	specs := opts.Participants
	if len(specs) == 0 {
		specs = DemoFederation()
	}
	hosts := opts.GatewayHosts
	if len(hosts) == 0 {
		hosts = DefaultGatewayHosts()
	}
	if err := checkSpecs(specs); err != nil {
		return err
	}

	files, err := generate(specs, hosts, time.Now())
	if err != nil {
		return err
	}

	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	madeDirs := map[string]bool{opts.Dir: true}
	for _, f := range files {
		p := filepath.Join(opts.Dir, filepath.FromSlash(f.name))
		if d := filepath.Dir(p); !madeDirs[d] {
			// The sub-folders are the generator's own: 0700 even if they
			// existed with another mode.
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("pki: %w", err)
			}
			if err := os.Chmod(d, 0o700); err != nil {
				return fmt.Errorf("pki: %w", err)
			}
			madeDirs[d] = true
		}
		if err := writeFile(p, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// checkSpecs refuses ids that are not participant ids (they become folder
// names) and repeated ids, before anything is generated.
func checkSpecs(specs []Spec) error {
	var errs []error
	seen := make(map[string]bool)
	for i, s := range specs {
		switch {
		case !trust.ValidID(s.ID):
			errs = append(errs, fmt.Errorf("pki: participants[%d]: id %q does not match %s", i, s.ID, trust.IDPattern))
		case seen[s.ID]:
			errs = append(errs, fmt.Errorf("pki: participants[%d]: id %s listed twice", i, s.ID))
		}
		seen[s.ID] = true
	}
	return errors.Join(errs...)
}

type file struct {
	name string // slash-separated, relative to Dir
	data []byte
	mode fs.FileMode
}

// generate makes every file in memory, the registry last, and checks the
// registry with the trust package's rules.
func generate(specs []Spec, hosts []string, now time.Time) ([]file, error) {
	var out fileList
	ca, err := makeCA(&out, now)
	if err != nil {
		return nil, err
	}
	if err := makeGateway(&out, ca, hosts, now); err != nil {
		return nil, err
	}
	reg, err := makeParticipants(&out, ca, specs, now)
	if err != nil {
		return nil, err
	}
	data, err := registryYAML(reg)
	if err != nil {
		return nil, err
	}
	out.add(RegistryFile, data, 0o644)
	return out, nil
}

// fileList collects the generated files in the order they are to be
// written.
type fileList []file

// add appends a file, to be written with the given mode.
func (l *fileList) add(name string, data []byte, mode fs.FileMode) {
	*l = append(*l, file{name: name, data: data, mode: mode})
}

// devCA is the development CA that issues every other certificate.
type devCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// makeCA makes the self-signed development CA and adds its certificate and
// key.
func makeCA(out *fileList, now time.Time) (*devCA, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(now, pkix.Name{
		CommonName:   "xborder development CA",
		Organization: []string{"xborder development PKI (not for production)"},
	})
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: make CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: make CA: %w", err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	out.add(CACert, certPEM(der), 0o644)
	out.add(CAKey, kp, 0o600)
	return &devCA{cert: cert, key: key}, nil
}

// issue makes a new key and a certificate for it from tmpl, signed by the
// CA, and returns both as PEM.
func (ca *devCA) issue(tmpl *x509.Certificate) ([]byte, []byte, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue certificate: %w", err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM(der), kp, nil
}

// addJWKs makes a signing and an encryption JWK, adds both halves of each
// under dir, and returns the public halves.
func addJWKs(out *fileList, dir string) (sign, enc *envelope.PublicKey, err error) {
	for _, use := range []string{envelope.UseSig, envelope.UseEnc} {
		k, err := envelope.GenerateP256(use)
		if err != nil {
			return nil, nil, fmt.Errorf("pki: %w", err)
		}
		priv, err := jwkJSON(k)
		if err != nil {
			return nil, nil, err
		}
		pub, err := jwkJSON(k.Public())
		if err != nil {
			return nil, nil, err
		}
		name, pubName := SignJWK, SignPubJWK
		if use == envelope.UseEnc {
			name, pubName = EncJWK, EncPubJWK
		}
		out.add(path.Join(dir, name), priv, 0o600)
		out.add(path.Join(dir, pubName), pub, 0o644)
		if use == envelope.UseSig {
			sign = k.Public()
		} else {
			enc = k.Public()
		}
	}
	return sign, enc, nil
}

// addHost makes the certificate valid for h, an IP address or a DNS name.
func addHost(tmpl *x509.Certificate, h string) {
	if ip := net.ParseIP(h); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
}

// makeGateway adds the gateway's TLS certificate, audit key, JOSE keys and
// operator token.
func makeGateway(out *fileList, ca *devCA, hosts []string, now time.Time) error {
	tmpl, err := template(now, pkix.Name{CommonName: GatewayCN})
	if err != nil {
		return err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range hosts {
		addHost(tmpl, h)
	}
	crt, key, err := ca.issue(tmpl)
	if err != nil {
		return err
	}
	out.add(path.Join(GatewayDir, TLSCert), crt, 0o644)
	out.add(path.Join(GatewayDir, TLSKey), key, 0o600)
	// The audit log's subject-hash key, made here so that a gateway whose
	// key folder is read-only (docker-compose) finds it.
	auditKey := make([]byte, 32)
	if _, err := rand.Read(auditKey); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	out.add(path.Join(GatewayDir, AuditKey), []byte(hex.EncodeToString(auditKey)+"\n"), 0o600)
	if _, _, err := addJWKs(out, GatewayDir); err != nil {
		return err
	}
	// The operator listener's bearer token (opstoken.go).
	opsToken, err := newOpsToken()
	if err != nil {
		return err
	}
	out.add(OpsTokenFile, opsToken, 0o600)
	return nil
}

// makeParticipants adds every participant's files and returns the registry
// that lists them, once the trust package has accepted it.
func makeParticipants(out *fileList, ca *devCA, specs []Spec, now time.Time) (trust.File, error) {
	reg := trust.File{TrustAnchors: []string{CACert}}
	var parts []*trust.Participant
	for _, s := range specs {
		entry, part, err := makeParticipant(out, ca, s, now)
		if err != nil {
			return trust.File{}, err
		}
		reg.Participants = append(reg.Participants, entry)
		parts = append(parts, part)
	}
	if _, err := trust.New([]*x509.Certificate{ca.cert}, parts); err != nil {
		return trust.File{}, fmt.Errorf("pki: participants do not make a valid registry: %w", err)
	}
	return reg, nil
}

// makeParticipant adds one participant's TLS certificate, browser bundle
// and JWKs, and returns its registry entry both as written to the file and
// as the trust package checks it.
func makeParticipant(out *fileList, ca *devCA, s Spec, now time.Time) (trust.FileParticipant, *trust.Participant, error) {
	delivery := trust.Delivery{Adapter: trust.AdapterInbox}
	if s.Delivery.Adapter != "" {
		delivery = s.Delivery
	}
	tmpl, err := participantTemplate(s, delivery, now)
	if err != nil {
		return trust.FileParticipant{}, nil, err
	}
	crt, key, err := ca.issue(tmpl)
	if err != nil {
		return trust.FileParticipant{}, nil, err
	}
	out.add(path.Join(s.ID, TLSCert), crt, 0o644)
	out.add(path.Join(s.ID, TLSKey), key, 0o600)
	bundle, err := p12(crt, key, ca.cert)
	if err != nil {
		return trust.FileParticipant{}, nil, err
	}
	out.add(path.Join(s.ID, TLSP12), bundle, 0o600)
	sign, enc, err := addJWKs(out, s.ID)
	if err != nil {
		return trust.FileParticipant{}, nil, err
	}
	entry := trust.FileParticipant{
		ID:            s.ID,
		Name:          s.Name,
		Kind:          s.Kind,
		Country:       s.Country,
		Roles:         append([]string{}, s.Roles...),
		SigningKeys:   []string{path.Join(s.ID, SignPubJWK)},
		EncryptionKey: path.Join(s.ID, EncPubJWK),
		Delivery:      delivery,
	}
	part := &trust.Participant{
		ID: s.ID, Name: s.Name, Kind: s.Kind, Country: s.Country, Roles: s.Roles,
		SigningKeys: []*envelope.PublicKey{sign}, EncryptionKey: enc, Delivery: delivery,
	}
	return entry, part, nil
}

// participantTemplate starts a participant's client certificate, named by
// its id in the CN and the SAN URI.
func participantTemplate(s Spec, delivery trust.Delivery, now time.Time) (*x509.Certificate, error) {
	subject := pkix.Name{CommonName: s.ID}
	if s.Name != "" {
		subject.Organization = []string{s.Name}
	}
	if s.Country != "" {
		subject.Country = []string{s.Country}
	}
	tmpl, err := template(now, subject)
	if err != nil {
		return nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = []*url.URL{{Scheme: "urn", Opaque: "xborder:participant:" + s.ID}}
	if delivery.Adapter == trust.AdapterHTTPS {
		// A push recipient serves its endpoint with the same certificate.
		u, err := url.Parse(delivery.URL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("pki: %s: invalid push URL", s.ID)
		}
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		addHost(tmpl, u.Hostname())
	}
	return tmpl, nil
}

// registryYAML encodes the registry under a warning that it is for
// development only.
func registryYAML(reg trust.File) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Development trust registry written by `xborder pki init`.\n" +
		"# Development only: never commit it, never use it in production.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(reg); err != nil {
		return nil, fmt.Errorf("pki: encode registry: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("pki: encode registry: %w", err)
	}
	return buf.Bytes(), nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return k, nil
}

// template starts a certificate: random positive 128-bit serial, valid from
// an hour ago for two years.
func template(now time.Time, subject pkix.Name) (*x509.Certificate, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	var serial *big.Int
	for serial == nil || serial.Sign() == 0 {
		s, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		serial = s
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
	}, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyPEM encodes a private key as PKCS#8 PEM.
func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func jwkJSON(k json.Marshaler) ([]byte, error) {
	raw, err := k.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("pki: encode JWK: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("pki: encode JWK: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// writeFile replaces path atomically with data and the given mode (also
// when the file existed with another mode).
func writeFile(p string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(name, p); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	ok = true
	return nil
}
