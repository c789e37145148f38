package envelope

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Sign returns a compact JWS over payload. The protected header holds alg
// (ES256 for a P-256 key, EdDSA for an Ed25519 key), kid (the key's
// thumbprint) and typ, nothing else.
func Sign(payload []byte, key *PrivateKey, typ string) ([]byte, error) {
	if key == nil {
		return nil, errors.New("envelope: sign: no key")
	}
	if typ == "" {
		return nil, errors.New("envelope: sign: empty typ")
	}
	if key.Use() != "" && key.Use() != UseSig {
		return nil, fmt.Errorf("envelope: sign: key %s is not a signing key", key.KID())
	}
	var alg jose.SignatureAlgorithm
	switch key.jwk.Key.(type) {
	case *ecdsa.PrivateKey:
		alg = jose.ES256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("envelope: sign: key %s has no algorithm in the profile", key.KID())
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", key.KID())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key.jwk.Key}, opts)
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	return []byte(s), nil
}

// Encrypt returns a compact JWE of plaintext (a compact JWS) to the key to:
// alg ECDH-ES+A256KW for a P-256 key or RSA-OAEP-256 for an RSA key, enc
// A256GCM, kid = to.KID(), cty = xborder+jws, no compression.
func Encrypt(plaintext []byte, to *PublicKey) ([]byte, error) {
	if to == nil {
		return nil, errors.New("envelope: encrypt: no key")
	}
	if to.Use() != "" && to.Use() != UseEnc {
		return nil, fmt.Errorf("envelope: encrypt: key %s is not an encryption key", to.KID())
	}
	var alg jose.KeyAlgorithm
	switch to.jwk.Key.(type) {
	case *ecdsa.PublicKey:
		alg = jose.ECDH_ES_A256KW
	case *rsa.PublicKey:
		alg = jose.RSA_OAEP_256
	default:
		return nil, fmt.Errorf("envelope: encrypt: key %s cannot encrypt", to.KID())
	}
	enc, err := jose.NewEncrypter(jose.A256GCM,
		jose.Recipient{Algorithm: alg, Key: to.jwk.Key, KeyID: to.KID()},
		(&jose.EncrypterOptions{}).WithContentType(TypMessage))
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	obj, err := enc.Encrypt(plaintext)
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	return []byte(s), nil
}

// Seal signs payload with signKey (typ as given) and encrypts the JWS to to.
func Seal(payload []byte, signKey *PrivateKey, typ string, to *PublicKey) ([]byte, error) {
	jws, err := Sign(payload, signKey, typ)
	if err != nil {
		return nil, err
	}
	return Encrypt(jws, to)
}
