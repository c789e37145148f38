package envelope

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Allow-lists handed to go-jose's parse functions. The header is also checked
// here before go-jose sees it, so that each refusal has its own code.
var (
	keyAlgs        = []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}
	keyAlgsWithRSA = []jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256}
	contentEncs    = []jose.ContentEncryption{jose.A256GCM}
	sigAlgs        = []jose.SignatureAlgorithm{jose.ES256}
	sigAlgsWithEd  = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}
)

// parseError maps a go-jose parse error (the header has been checked
// already, so it is about the other parts) to malformed_envelope.
func parseError(err error, what string) error {
	var b64 base64.CorruptInputError
	if errors.As(err, &b64) {
		return newError(CodeMalformedEnvelope, "base64", err)
	}
	return newError(CodeMalformedEnvelope, what, err)
}

// Decrypt opens a compact JWE and returns its plaintext. The protected header
// must be in the profile (alg, enc A256GCM, cty xborder+jws, no zip, crit,
// jku, jwk, x5u or x5c) and its kid must name one of keys; errors are *Error.
func Decrypt(jwe []byte, keys []*PrivateKey, p Profile) ([]byte, error) {
	s := string(jwe)
	seg, err := splitCompact(s, 5)
	if err != nil {
		return nil, err
	}
	h, err := protectedHeader(seg)
	if err != nil {
		return nil, err
	}
	alg, _ := headerString(h, "alg")
	algs := keyAlgs
	if p.AllowRSAOAEP256 {
		algs = keyAlgsWithRSA
	}
	if !containsKeyAlg(algs, alg) {
		return nil, newError(CodeUnsupportedAlgorithm, "alg", nil)
	}
	if enc, _ := headerString(h, "enc"); enc != string(jose.A256GCM) {
		return nil, newError(CodeUnsupportedAlgorithm, "enc", nil)
	}
	if _, ok := h["zip"]; ok {
		return nil, newError(CodeUnsupportedAlgorithm, "zip", nil)
	}
	if err := checkForbidden(h); err != nil {
		return nil, err
	}
	if cty, _ := headerString(h, "cty"); cty != TypMessage {
		return nil, newError(CodeUnsupportedAlgorithm, "cty", nil)
	}

	obj, err := jose.ParseEncryptedCompact(s, algs, contentEncs)
	if err != nil {
		return nil, parseError(err, "jwe")
	}

	kid, _ := headerString(h, "kid")
	key := decryptionKey(keys, kid, jose.KeyAlgorithm(alg))
	if key == nil {
		return nil, newError(CodeDecryptionFailed, "kid", nil)
	}
	plaintext, err := obj.Decrypt(key)
	if err != nil {
		return nil, newError(CodeDecryptionFailed, "", err)
	}
	return plaintext, nil
}

func containsKeyAlg(list []jose.KeyAlgorithm, alg string) bool {
	for _, a := range list {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// decryptionKey returns the crypto key of the entry of keys named kid, when
// it is an encryption key of the type alg needs.
func decryptionKey(keys []*PrivateKey, kid string, alg jose.KeyAlgorithm) any {
	if kid == "" {
		return nil
	}
	for _, k := range keys {
		if k == nil || k.KID() != kid {
			continue
		}
		if k.Use() != "" && k.Use() != UseEnc {
			return nil
		}
		switch key := k.jwk.Key.(type) {
		case *ecdsa.PrivateKey:
			if alg == jose.ECDH_ES_A256KW {
				return key
			}
		case *rsa.PrivateKey:
			if alg == jose.RSA_OAEP_256 {
				return key
			}
		}
		return nil
	}
	return nil
}

// KeyFunc resolves a signing key by kid.
type KeyFunc func(kid string) (*PublicKey, bool)

// Verify checks a compact JWS whose protected header must carry alg (ES256,
// or EdDSA when enabled), kid and typ (equal to typ), and no jwk, jku, x5u,
// x5c, crit or b64. The key comes only from keys, by the protected kid. It
// returns the payload and the kid; errors are *Error.
func Verify(jws []byte, typ string, keys KeyFunc, p Profile) (payload []byte, kid string, err error) {
	s := string(jws)
	seg, err := splitCompact(s, 3)
	if err != nil {
		return nil, "", err
	}
	h, err := protectedHeader(seg)
	if err != nil {
		return nil, "", err
	}
	alg, _ := headerString(h, "alg")
	algs := sigAlgs
	if p.AllowEdDSA {
		algs = sigAlgsWithEd
	}
	if !containsSigAlg(algs, alg) {
		return nil, "", newError(CodeUnsupportedAlgorithm, "alg", nil)
	}
	if err := checkForbidden(h); err != nil {
		return nil, "", err
	}
	if t, _ := headerString(h, "typ"); typ == "" || t != typ {
		return nil, "", newError(CodeUnsupportedAlgorithm, "typ", nil)
	}

	obj, err := jose.ParseSignedCompact(s, algs)
	if err != nil {
		return nil, "", parseError(err, "jws")
	}

	kid, _ = headerString(h, "kid")
	if kid == "" || keys == nil {
		return nil, "", newError(CodeSignatureInvalid, "kid", nil)
	}
	pub, ok := keys(kid)
	if !ok || pub == nil {
		return nil, "", newError(CodeSignatureInvalid, "kid", nil)
	}
	key := verificationKey(pub, jose.SignatureAlgorithm(alg))
	if key == nil {
		return nil, "", newError(CodeSignatureInvalid, "kid", errors.New("envelope: key type does not match alg"))
	}
	payload, err = obj.Verify(key)
	if err != nil {
		return nil, "", newError(CodeSignatureInvalid, "signature", err)
	}
	return payload, kid, nil
}

func containsSigAlg(list []jose.SignatureAlgorithm, alg string) bool {
	for _, a := range list {
		if string(a) == alg {
			return true
		}
	}
	return false
}

func verificationKey(pub *PublicKey, alg jose.SignatureAlgorithm) any {
	if pub.Use() != "" && pub.Use() != UseSig {
		return nil
	}
	switch key := pub.jwk.Key.(type) {
	case *ecdsa.PublicKey:
		if alg == jose.ES256 {
			return key
		}
	case ed25519.PublicKey:
		if alg == jose.EdDSA {
			return key
		}
	}
	return nil
}

// SigningKeyResolver finds a registered signing key and the participant that
// owns it. The trust registry implements it.
type SigningKeyResolver interface {
	SigningKey(kid string) (owner string, key *PublicKey, ok bool)
}

// Opener opens the envelopes sent to the gateway (PROTOCOL.md §3).
type Opener struct {
	Profile        Profile
	DecryptionKeys []*PrivateKey
	Keys           SigningKeyResolver
}

// Opened is an envelope that decrypted, verified and holds a valid message.
type Opened struct {
	JWS       []byte // the inner compact JWS exactly as it was inside the JWE
	JWSSHA256 string // hex SHA-256 of JWS
	SenderKID string
	// Signer owns SenderKID. Open does not compare it with Message.From or
	// the TLS identity: the caller does.
	Signer  string
	Message *Message
}

// Open decrypts jwe with the gateway's keys, verifies the inner JWS (typ
// xborder+jws) with a registered signing key and validates the message at
// time now. Every error is an *Error with a Code.
func (o *Opener) Open(jwe []byte, now time.Time) (*Opened, error) {
	jws, err := Decrypt(jwe, o.DecryptionKeys, o.Profile)
	if err != nil {
		return nil, err
	}
	var signer string
	resolve := func(kid string) (*PublicKey, bool) {
		if o.Keys == nil {
			return nil, false
		}
		owner, key, ok := o.Keys.SigningKey(kid)
		signer = owner
		return key, ok
	}
	payload, kid, err := Verify(jws, TypMessage, resolve, o.Profile)
	if err != nil {
		return nil, err
	}
	msg, err := ParseMessage(payload, now, o.Profile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(jws)
	return &Opened{
		JWS:       jws,
		JWSSHA256: hex.EncodeToString(sum[:]),
		SenderKID: kid,
		Signer:    signer,
		Message:   msg,
	}, nil
}
