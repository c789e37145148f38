package gateway

import (
	"crypto/tls"
	"fmt"
	"path/filepath"

	"github.com/xborder/xborder/gateway/envelope"
)

// Keys is the gateway's own material (PROTOCOL §8 `gateway/`).
type Keys struct {
	TLS        tls.Certificate
	Signing    *envelope.PrivateKey
	Encryption []*envelope.PrivateKey // current first, then older ones still opened during a rotation
	JWKS       []byte
}

// LoadKeys reads tls.crt, tls.key, sign.jwk and enc.jwk from dir. Older
// encryption keys kept for a rotation overlap are read from enc.*.jwk.
func LoadKeys(dir string) (*Keys, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	sign, err := envelope.LoadPrivateJWK(filepath.Join(dir, "sign.jwk"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	enc, err := envelope.LoadPrivateJWK(filepath.Join(dir, "enc.jwk"))
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	k := &Keys{TLS: cert, Signing: sign, Encryption: []*envelope.PrivateKey{enc}}
	// Earlier encryption keys still opened during a rotation overlap
	// (enc.<kid>.jwk) and earlier signing keys whose public halves keep old
	// receipts verifiable (sign.<kid>.pub.jwk): see pki.RotateGateway.
	for _, p := range retired(dir, "enc.*.jwk", "enc.pub.jwk") {
		ok, err := envelope.LoadPrivateJWK(p)
		if err != nil {
			return nil, fmt.Errorf("gateway: keys: %w", err)
		}
		k.Encryption = append(k.Encryption, ok)
	}
	pubs := []*envelope.PublicKey{sign.Public()}
	for _, e := range k.Encryption {
		pubs = append(pubs, e.Public())
	}
	for _, p := range retired(dir, "sign.*.pub.jwk", "sign.pub.jwk") {
		pk, err := envelope.LoadPublicJWK(p)
		if err != nil {
			return nil, fmt.Errorf("gateway: keys: %w", err)
		}
		pubs = append(pubs, pk)
	}
	k.JWKS, err = envelope.MarshalJWKS(pubs...)
	if err != nil {
		return nil, fmt.Errorf("gateway: keys: %w", err)
	}
	return k, nil
}

// retired lists the files of dir matching pattern, but current.
func retired(dir, pattern, current string) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	out := paths[:0]
	for _, p := range paths {
		if filepath.Base(p) != current {
			out = append(out, p)
		}
	}
	return out
}
