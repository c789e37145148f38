package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// TLSP12 is a participant's TLS certificate and key as PKCS#12, for a
// person to import into a browser (the compliance console).
const TLSP12 = "tls.p12"

// DevP12Password protects every development tls.p12. It is published (the
// README says it): the development PKI is for development only.
const DevP12Password = "xborder-dev"

// p12 bundles a certificate, its key and the CA as PKCS#12 with the
// algorithms of OpenSSL 3 (PBES2, PBKDF2-HMAC-SHA-256, AES-256-CBC,
// HMAC-SHA-256), which Chromium, Firefox and the system key stores import.
func p12(certPEM, keyPEM []byte, ca *x509.Certificate) ([]byte, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: p12: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: p12: %w", err)
	}
	out, err := pkcs12.Modern2023.Encode(pair.PrivateKey, leaf, []*x509.Certificate{ca}, DevP12Password)
	if err != nil {
		return nil, fmt.Errorf("pki: p12: %w", err)
	}
	return out, nil
}
