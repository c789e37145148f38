package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway/envelope"
)

// File is the on-disk form of the registry (PROTOCOL §7). Paths are relative
// to the registry file unless absolute.
type File struct {
	TrustAnchors []string          `yaml:"trust_anchors,flow"`
	Participants []FileParticipant `yaml:"participants"`
}

// FileParticipant is one participant entry of a registry file.
type FileParticipant struct {
	ID            string   `yaml:"id"`
	Name          string   `yaml:"name"`
	Kind          string   `yaml:"kind"`
	Country       string   `yaml:"country,omitempty"`
	Roles         []string `yaml:"roles,flow"`
	SigningKeys   []string `yaml:"signing_keys,flow"`
	EncryptionKey string   `yaml:"encryption_key"`
	Delivery      Delivery `yaml:"delivery,flow"`
	Suspended     bool     `yaml:"suspended,omitempty"`
	// TLSCert pins the participant's client certificate (PEM path).
	TLSCert string `yaml:"tls_cert,omitempty"`
	// TLSCA pins the CA that issues the participant's client certificate.
	TLSCA string `yaml:"tls_ca,omitempty"`
}

// DecodeFile decodes a registry file strictly: unknown keys and more than
// one YAML document are refused.
func DecodeFile(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("trust: registry file is empty")
		}
		return nil, fmt.Errorf("trust: decode registry: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("trust: registry file holds more than one YAML document")
	}
	return &f, nil
}

// Load reads, resolves and validates a registry file. Every problem found
// (unreadable files, unparsable keys or certificates, and everything
// Validate checks) is reported at once, joined with errors.Join.
func Load(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	f, err := DecodeFile(data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	return FromFile(f, dir)
}

// FromFile builds a registry from a decoded file, resolving relative paths
// against baseDir.
func FromFile(f *File, baseDir string) (*Registry, error) {
	l := &loader{baseDir: baseDir}
	r := &Registry{anchors: l.anchors(f.TrustAnchors)}
	incomplete := make(map[*Participant]bool)
	for i, fp := range f.Participants {
		p, keysUnreadable := l.participant(i, fp)
		if keysUnreadable {
			incomplete[p] = true
		}
		r.list = append(r.list, p)
	}

	errs := append(l.errs, r.validate(reported{
		anchors: len(f.TrustAnchors) > 0,
		keys:    incomplete,
	})...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.index()
	return r, nil
}

// loader reads the files a registry file names, resolving relative paths
// against baseDir. It records what it cannot read and goes on, so that
// every problem is reported at once.
type loader struct {
	baseDir string
	errs    problemList
}

// resolve makes a relative path relative to baseDir; empty and absolute
// paths are kept as they are.
func (l *loader) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.baseDir, p)
}

// anchors reads the trust anchors, keeping the CA certificates only.
func (l *loader) anchors(paths []string) []*x509.Certificate {
	var anchors []*x509.Certificate
	for i, p := range paths {
		certs, err := readCerts(l.resolve(p))
		if err != nil {
			l.errs.add("trust_anchors[%d] (%s): %v", i, p, err)
			continue
		}
		for _, c := range certs {
			if !c.BasicConstraintsValid || !c.IsCA {
				l.errs.add("trust_anchors[%d] (%s): not a CA certificate", i, p)
				continue
			}
			anchors = append(anchors, c)
		}
	}
	return anchors
}

// participant builds entry i with its keys and pinned certificates read.
// keysUnreadable reports that a key file failed, so that validate does not
// report the resulting absence of a key a second time.
func (l *loader) participant(i int, fp FileParticipant) (p *Participant, keysUnreadable bool) {
	at := fmt.Sprintf("participants[%d] (%s)", i, fp.ID)
	p = &Participant{
		ID:        fp.ID,
		Name:      fp.Name,
		Kind:      fp.Kind,
		Country:   fp.Country,
		Roles:     fp.Roles,
		Suspended: fp.Suspended,
		Delivery:  fp.Delivery,
	}
	if p.Delivery.Dir != "" {
		p.Delivery.Dir = l.resolve(p.Delivery.Dir)
	}
	for j, kp := range fp.SigningKeys {
		k, err := readPublicJWK(l.resolve(kp))
		if err != nil {
			l.errs.add("%s: signing_keys[%d] (%s): %v", at, j, kp, err)
			keysUnreadable = true
			continue
		}
		p.SigningKeys = append(p.SigningKeys, k)
	}
	if fp.EncryptionKey != "" {
		k, err := readPublicJWK(l.resolve(fp.EncryptionKey))
		if err != nil {
			l.errs.add("%s: encryption_key (%s): %v", at, fp.EncryptionKey, err)
			keysUnreadable = true
		} else {
			p.EncryptionKey = k
		}
	}
	p.TLSCert = l.pinnedCert(at, "tls_cert", fp.TLSCert)
	p.TLSCA = l.pinnedCert(at, "tls_ca", fp.TLSCA)
	return p, keysUnreadable
}

// pinnedCert reads the single certificate a pin (field) names; it returns
// nil when there is no pin or the pin cannot be used.
func (l *loader) pinnedCert(at, field, path string) *x509.Certificate {
	if path == "" {
		return nil
	}
	certs, err := readCerts(l.resolve(path))
	switch {
	case err != nil:
		l.errs.add("%s: %s (%s): %v", at, field, path, err)
	case len(certs) != 1:
		l.errs.add("%s: %s (%s): want exactly one certificate", at, field, path)
	default:
		return certs[0]
	}
	return nil
}

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// readPublicJWK reads a public JWK. A private JWK is refused: the registry is
// shared with operators and must never hold private key material.
func readPublicJWK(path string) (*envelope.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, unwrapPath(err)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return nil, errors.New("not a JSON object")
	}
	for _, m := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := members[m]; ok {
			return nil, errors.New("holds a private key; the registry takes public JWKs only")
		}
	}
	k, err := envelope.ParsePublicJWK(data)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// unwrapPath drops the *PathError wrapper: the path is already in the message.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func canEncrypt(k *envelope.PublicKey) bool {
	switch k.CryptoKey().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		return true
	}
	return false
}
