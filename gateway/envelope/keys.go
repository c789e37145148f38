package envelope

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// Key uses, as in a JWK's "use" member.
const (
	UseSig = "sig"
	UseEnc = "enc"
)

// PublicKey is a participant's or the gateway's public JWK. Its KID is always
// the RFC 7638 SHA-256 thumbprint of the key, whatever the file said.
type PublicKey struct {
	jwk jose.JSONWebKey
}

// PrivateKey is a private JWK with the same KID rules as PublicKey.
type PrivateKey struct {
	jwk jose.JSONWebKey
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint, base64url without padding.
func thumbprint(k *jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("envelope: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func normalise(k jose.JSONWebKey, wantPrivate bool) (jose.JSONWebKey, error) {
	if !k.Valid() {
		return k, errors.New("envelope: invalid JWK")
	}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		if wantPrivate {
			return k, errors.New("envelope: JWK is public, a private key is needed")
		}
		if key.Curve != elliptic.P256() {
			return k, errors.New("envelope: only P-256 EC keys are accepted")
		}
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P256() {
			return k, errors.New("envelope: only P-256 EC keys are accepted")
		}
	case ed25519.PublicKey:
		if wantPrivate {
			return k, errors.New("envelope: JWK is public, a private key is needed")
		}
	case ed25519.PrivateKey:
	case *rsa.PublicKey:
		if wantPrivate {
			return k, errors.New("envelope: JWK is public, a private key is needed")
		}
		if key.N.BitLen() < 2048 {
			return k, errors.New("envelope: RSA keys must have at least 2048 bits")
		}
	case *rsa.PrivateKey:
		if key.N.BitLen() < 2048 {
			return k, errors.New("envelope: RSA keys must have at least 2048 bits")
		}
	default:
		return k, fmt.Errorf("envelope: unsupported key type %T", k.Key)
	}
	if !wantPrivate && !k.IsPublic() {
		k = k.Public()
	}
	kid, err := thumbprint(&k)
	if err != nil {
		return k, err
	}
	k.KeyID = kid
	k.Certificates = nil
	return k, nil
}

// ParsePublicJWK parses a public JWK (a private one is reduced to its public
// half). Only P-256, Ed25519 and RSA ≥ 2048 keys are accepted.
func ParsePublicJWK(data []byte) (*PublicKey, error) {
	var k jose.JSONWebKey
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("envelope: parse JWK: %w", err)
	}
	n, err := normalise(k, false)
	if err != nil {
		return nil, err
	}
	return &PublicKey{jwk: n}, nil
}

// ParsePrivateJWK parses a private JWK.
func ParsePrivateJWK(data []byte) (*PrivateKey, error) {
	var k jose.JSONWebKey
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("envelope: parse JWK: %w", err)
	}
	n, err := normalise(k, true)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{jwk: n}, nil
}

// LoadPublicJWK reads a public JWK file.
func LoadPublicJWK(path string) (*PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	k, err := ParsePublicJWK(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// LoadPrivateJWK reads a private JWK file.
func LoadPrivateJWK(path string) (*PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	k, err := ParsePrivateJWK(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// GenerateP256 makes a new P-256 key for the given use (UseSig or UseEnc).
func GenerateP256(use string) (*PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("envelope: generate: %w", err)
	}
	return NewPrivateKey(priv, use)
}

// NewPrivateKey wraps a crypto private key (*ecdsa.PrivateKey on P-256,
// ed25519.PrivateKey or *rsa.PrivateKey) as a JWK for the given use.
func NewPrivateKey(key crypto.Signer, use string) (*PrivateKey, error) {
	alg := ""
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if use == UseSig {
			alg = string(jose.ES256)
		} else {
			alg = string(jose.ECDH_ES_A256KW)
		}
	case ed25519.PrivateKey:
		alg = string(jose.EdDSA)
	case *rsa.PrivateKey:
		if use == UseEnc {
			alg = string(jose.RSA_OAEP_256)
		} else {
			alg = string(jose.PS256)
		}
	default:
		return nil, fmt.Errorf("envelope: unsupported key type %T", k)
	}
	n, err := normalise(jose.JSONWebKey{Key: key, Use: use, Algorithm: alg}, true)
	if err != nil {
		return nil, err
	}
	return &PrivateKey{jwk: n}, nil
}

// KID is the key's RFC 7638 thumbprint.
func (k *PublicKey) KID() string { return k.jwk.KeyID }

// Use is the JWK "use" member ("sig", "enc" or empty).
func (k *PublicKey) Use() string { return k.jwk.Use }

// CryptoKey returns the underlying crypto public key.
func (k *PublicKey) CryptoKey() crypto.PublicKey { return k.jwk.Key }

// MarshalJSON writes the public JWK.
func (k *PublicKey) MarshalJSON() ([]byte, error) { return k.jwk.MarshalJSON() }

// KID is the key's RFC 7638 thumbprint.
func (k *PrivateKey) KID() string { return k.jwk.KeyID }

// Use is the JWK "use" member.
func (k *PrivateKey) Use() string { return k.jwk.Use }

// Signer returns the underlying crypto.Signer (for TLS certificates).
func (k *PrivateKey) Signer() crypto.Signer {
	s, _ := k.jwk.Key.(crypto.Signer)
	return s
}

// Public returns the public half, with the same KID.
func (k *PrivateKey) Public() *PublicKey {
	return &PublicKey{jwk: k.jwk.Public()}
}

// MarshalJSON writes the private JWK (handle with care).
func (k *PrivateKey) MarshalJSON() ([]byte, error) { return k.jwk.MarshalJSON() }
