package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/xborder/xborder/gateway/envelope"
)

// Rotation file names in a gateway key folder: retired keys are kept beside
// the current ones, named by their kid.
//
//	sign.<kid>.pub.jwk  an earlier signing key's public half: still listed in
//	                    /v1/jwks so that earlier receipts, deliveries and
//	                    audit checkpoints keep verifying
//	enc.<kid>.jwk       an earlier encryption key: messages sealed to it are
//	                    still opened during the overlap, until Retire
func retiredSignPub(kid string) string { return "sign." + kid + ".pub.jwk" }
func retiredEnc(kid string) string     { return "enc." + kid + ".jwk" }

// RotateGateway makes new signing and encryption keys for the gateway key
// folder dir and keeps the previous ones for the overlap. The gateway picks
// them up when it starts. It returns the kids of the retired keys.
func RotateGateway(dir string) (oldSign, oldEnc string, err error) {
	sign, err := envelope.LoadPrivateJWK(filepath.Join(dir, SignJWK))
	if err != nil {
		return "", "", fmt.Errorf("pki: rotate: %w", err)
	}
	enc, err := envelope.LoadPrivateJWK(filepath.Join(dir, EncJWK))
	if err != nil {
		return "", "", fmt.Errorf("pki: rotate: %w", err)
	}
	newSign, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		return "", "", err
	}
	newEnc, err := envelope.GenerateP256(envelope.UseEnc)
	if err != nil {
		return "", "", err
	}
	// Keep the old ones first, so that a crash half-way loses no key.
	writes := []struct {
		name string
		key  interface{ MarshalJSON() ([]byte, error) }
		mode os.FileMode
	}{
		{retiredSignPub(sign.KID()), sign.Public(), 0o644},
		{retiredEnc(enc.KID()), enc, 0o600},
		{SignJWK, newSign, 0o600},
		{SignPubJWK, newSign.Public(), 0o644},
		{EncJWK, newEnc, 0o600},
		{EncPubJWK, newEnc.Public(), 0o644},
	}
	for _, w := range writes {
		b, err := jwkJSON(w.key)
		if err != nil {
			return "", "", err
		}
		if err := writeFile(filepath.Join(dir, w.name), b, w.mode); err != nil {
			return "", "", err
		}
	}
	return sign.KID(), enc.KID(), nil
}

// RetireEncryption ends the overlap of an earlier encryption key: messages
// sealed to it are no longer opened. Earlier signing keys are never retired
// here: their public halves are what old receipts verify against.
func RetireEncryption(dir, kid string) error {
	if kid == "" || strings.ContainsAny(kid, `/\.`) {
		return fmt.Errorf("pki: retire: invalid kid")
	}
	p := filepath.Join(dir, retiredEnc(kid))
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("pki: retire: %w", err)
	}
	return nil
}
