package trust

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// URIPrefix is the SAN URI form of a participant identity (PROTOCOL §1):
// urn:xborder:participant:<ID>.
const URIPrefix = "urn:xborder:participant:"

// Identification errors. Identify wraps exactly one of them; test with
// errors.Is. None carries certificate content beyond a participant id.
var (
	// ErrNoClientCert: the connection carries no client certificate.
	ErrNoClientCert = errors.New("trust: no client certificate")
	// ErrUntrusted: the certificate does not chain to a trust anchor for
	// client authentication (foreign CA, expired, wrong key usage).
	ErrUntrusted = errors.New("trust: client certificate not trusted")
	// ErrNoIdentity: the certificate names no participant id.
	ErrNoIdentity = errors.New("trust: client certificate names no participant")
	// ErrIdentityMismatch: the Subject CN and the SAN URI name different
	// participants, or several SAN URIs disagree.
	ErrIdentityMismatch = errors.New("trust: client certificate names conflicting participants")
	// ErrUnknownIdentity: the id named is not in the registry.
	ErrUnknownIdentity = errors.New("trust: unknown participant")
	// ErrPinMismatch: the participant's pinned certificate or CA does not match.
	ErrPinMismatch = errors.New("trust: client certificate does not match the participant's pin")
)

// Identify returns the participant id of a TLS client. It verifies the peer
// certificate chain itself against this registry's trust anchors (so a
// connection accepted under a previous registry is judged by the current
// one), reads the id from the Subject CN or the SAN URI
// urn:xborder:participant:<ID> (if both name an id they must agree; a CN that
// is not an id is ignored), checks that the participant is registered and
// honours its pinning.
//
// A suspended participant is still identified: refusing it is the
// exchange's and the policy's decision (PROTOCOL §3.2, DOMAIN R14).
func (r *Registry) Identify(state *tls.ConnectionState) (string, error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return "", ErrNoClientCert
	}
	leaf := state.PeerCertificates[0]
	if leaf.IsCA {
		return "", fmt.Errorf("%w: a CA certificate is not a client certificate", ErrUntrusted)
	}
	now := time.Now()
	key := chainKey(state.PeerCertificates)
	if id, ok := r.verified.get(key, now); ok {
		return id, nil
	}
	id, window, err := r.identify(leaf, state.PeerCertificates[1:], now)
	if err != nil {
		return "", err
	}
	r.verified.put(key, id, window)
	return id, nil
}

// identify is Identify without the cache; window is when the verified chain
// stays valid.
func (r *Registry) identify(leaf *x509.Certificate, intermediates []*x509.Certificate, now time.Time) (string, [2]time.Time, error) {
	var window [2]time.Time
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         r.pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   now,
	})
	if err != nil {
		return "", window, fmt.Errorf("%w: %s", ErrUntrusted, verifyReason(err))
	}

	id, err := identity(leaf)
	if err != nil {
		return "", window, err
	}
	p, ok := r.byID[id]
	if !ok {
		return "", window, fmt.Errorf("%w %s", ErrUnknownIdentity, id)
	}
	if p.TLSCert != nil && !bytes.Equal(p.TLSCert.Raw, leaf.Raw) {
		return "", window, fmt.Errorf("%w: %s pins another certificate", ErrPinMismatch, id)
	}
	if p.TLSCA != nil && !chainsThrough(chains, p.TLSCA) {
		return "", window, fmt.Errorf("%w: %s pins another issuing CA", ErrPinMismatch, id)
	}
	// The chain stays valid while every certificate of one verified chain
	// is: the latest NotBefore to the earliest NotAfter.
	window = [2]time.Time{chains[0][0].NotBefore, chains[0][0].NotAfter}
	for _, c := range chains[0][1:] {
		if c.NotBefore.After(window[0]) {
			window[0] = c.NotBefore
		}
		if c.NotAfter.Before(window[1]) {
			window[1] = c.NotAfter
		}
	}
	return id, window, nil
}

// identity reads the participant id from a certificate's Subject CN and SAN
// URIs.
func identity(c *x509.Certificate) (string, error) {
	var uriID string
	for _, u := range c.URIs {
		if !strings.EqualFold(u.Scheme, "urn") {
			continue
		}
		const nss = "xborder:participant:"
		if len(u.Opaque) < len(nss) || !strings.EqualFold(u.Opaque[:len(nss)], nss) {
			continue
		}
		id := u.Opaque[len(nss):]
		if !idRE.MatchString(id) {
			return "", fmt.Errorf("%w: malformed participant SAN URI", ErrNoIdentity)
		}
		if uriID != "" && uriID != id {
			return "", ErrIdentityMismatch
		}
		uriID = id
	}
	cnID := ""
	if idRE.MatchString(c.Subject.CommonName) {
		cnID = c.Subject.CommonName
	}
	switch {
	case uriID != "" && cnID != "" && uriID != cnID:
		return "", fmt.Errorf("%w: CN %s, SAN URI %s", ErrIdentityMismatch, cnID, uriID)
	case uriID != "":
		return uriID, nil
	case cnID != "":
		return cnID, nil
	}
	return "", ErrNoIdentity
}

func chainsThrough(chains [][]*x509.Certificate, ca *x509.Certificate) bool {
	for _, chain := range chains {
		for _, c := range chain[1:] {
			if bytes.Equal(c.RawSubject, ca.RawSubject) &&
				bytes.Equal(c.RawSubjectPublicKeyInfo, ca.RawSubjectPublicKeyInfo) {
				return true
			}
		}
	}
	return false
}

// verifyReason names why a chain failed without echoing certificate content
// (a foreign certificate's subject may name a person).
func verifyReason(err error) string {
	var (
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return "unknown authority"
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			return "expired or not yet valid"
		case x509.IncompatibleUsage:
			return "not issued for client authentication"
		case x509.NotAuthorizedToSign:
			return "issuer is not a CA"
		}
		return "invalid certificate"
	}
	return "chain verification failed"
}

// TLSConfig returns the server side of the exchange API's mTLS (PROTOCOL §1):
// TLS 1.3 only, a client certificate required and verified against the
// registry's trust anchors.
func (r *Registry) TLSConfig(serverCert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    r.pool,
	}
}
