package envelope_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/xborder/xborder/gateway/envelope"
)

func jwsHeader(alg, kid, typ string) string {
	return fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":%q}`, alg, kid, typ)
}

func jweHeader(alg, enc, kid, cty string) string {
	return fmt.Sprintf(`{"alg":%q,"enc":%q,"kid":%q,"cty":%q}`, alg, enc, kid, cty)
}

func sealMsg(t testing.TB, f *fixture, payload []byte) []byte {
	t.Helper()
	out, err := envelope.Seal(payload, f.senderSig, envelope.TypMessage, f.gwEnc.Public())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wrap(t testing.TB, f *fixture, jws string) []byte {
	t.Helper()
	out, err := envelope.Encrypt([]byte(jws), f.gwEnc.Public())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawJWS signs the valid message with the sender's key under header.
func rawJWS(t *testing.T, f *fixture, header string) string {
	return signRaw(t, ecdsaKey(f.senderSig), header, mustJSON(t, message()))
}

func TestOpenErrors(t *testing.T) {
	f := keys(t)
	withRSA := envelope.Profile{AllowRSAOAEP256: true}
	withEd := envelope.Profile{AllowEdDSA: true}
	gw := f.gwEnc.KID()
	snd := f.senderSig.KID()
	ctyOpt := func() *jose.EncrypterOptions { return (&jose.EncrypterOptions{}).WithContentType(envelope.TypMessage) }
	validJWS := func(t *testing.T) string { return rawJWS(t, f, jwsHeader("ES256", snd, envelope.TypMessage)) }

	cases := []struct {
		name    string
		profile envelope.Profile
		build   func(t *testing.T) []byte
		code    envelope.Code
		detail  string
	}{
		// malformed_envelope: the JWE
		{"empty", envelope.Profile{}, func(t *testing.T) []byte { return nil }, envelope.CodeMalformedEnvelope, "compact"},
		{"jwe four parts", envelope.Profile{}, func(t *testing.T) []byte {
			s := string(sealMsg(t, f, mustJSON(t, message())))
			return []byte(s[:strings.LastIndexByte(s, '.')])
		}, envelope.CodeMalformedEnvelope, "compact"},
		{"jwe six parts", envelope.Profile{}, func(t *testing.T) []byte {
			return append(sealMsg(t, f, mustJSON(t, message())), ".AAAA"...)
		}, envelope.CodeMalformedEnvelope, "compact"},
		{"jwe json serialization", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(`{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9","ciphertext":"AAAA"}`)
		}, envelope.CodeMalformedEnvelope, "compact"},
		{"jwe header bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(replacePart(craftedJWE("{}"), 0, "e30*"))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe header padded base64", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(replacePart(craftedJWE("{}"), 0, "e30="))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe header not json", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(`{"alg":"ECDH-ES+A256KW"`))
		}, envelope.CodeMalformedEnvelope, "header"},
		{"jwe header not an object", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(`["alg"]`))
		}, envelope.CodeMalformedEnvelope, "header"},
		{"jwe header duplicate alg", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(`{"alg":"ECDH-ES+A256KW","alg":"dir","enc":"A256GCM","cty":"xborder+jws"}`))
		}, envelope.CodeMalformedEnvelope, "header"},
		{"jwe ciphertext bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(replacePart(string(sealMsg(t, f, mustJSON(t, message()))), 3, "AA$A"))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe tag bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(replacePart(string(sealMsg(t, f, mustJSON(t, message()))), 4, "A"))
		}, envelope.CodeMalformedEnvelope, "base64"},

		// malformed_envelope: the JWS inside
		{"jws two parts", envelope.Profile{}, func(t *testing.T) []byte {
			s := validJWS(t)
			return wrap(t, f, s[:strings.LastIndexByte(s, '.')])
		}, envelope.CodeMalformedEnvelope, "compact"},
		{"jws four parts", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, validJWS(t)+".AAAA")
		}, envelope.CodeMalformedEnvelope, "compact"},
		{"jws header bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, replacePart(validJWS(t), 0, "e30!"))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws header not json", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, replacePart(validJWS(t), 0, b64([]byte("alg=ES256"))))
		}, envelope.CodeMalformedEnvelope, "header"},
		{"jws header duplicate kid", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"kid":"other","typ":"xborder+jws"}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeMalformedEnvelope, "header"},
		{"jws payload bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, replacePart(validJWS(t), 1, "eyJ!"))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws signature bad base64", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, replacePart(validJWS(t), 2, "A"))
		}, envelope.CodeMalformedEnvelope, "base64"},

		// malformed_envelope: the message
		{"payload not json", envelope.Profile{}, func(t *testing.T) []byte {
			return sealMsg(t, f, []byte(`{"id":`))
		}, envelope.CodeMalformedEnvelope, "json"},
		{"payload not an object", envelope.Profile{}, func(t *testing.T) []byte {
			return sealMsg(t, f, []byte(`["id"]`))
		}, envelope.CodeMalformedEnvelope, "json"},
		{"payload duplicate key", envelope.Profile{}, func(t *testing.T) []byte {
			b := mustJSON(t, message())
			return sealMsg(t, f, append([]byte(`{"to":"UN-UNHCR",`), b[1:]...))
		}, envelope.CodeMalformedEnvelope, "duplicate_key"},
		{"payload depth 33", envelope.Profile{}, func(t *testing.T) []byte {
			m := message()
			m["record"] = map[string]any{"x": nest(31)} // message 1 + record 1 + 31
			return sealMsg(t, f, mustJSON(t, m))
		}, envelope.CodeMalformedEnvelope, "depth"},
		{"payload trailing data", envelope.Profile{}, func(t *testing.T) []byte {
			return sealMsg(t, f, append(mustJSON(t, message()), " {}"...))
		}, envelope.CodeMalformedEnvelope, "trailing_data"},

		// unsupported_algorithm: the JWE
		{"jwe alg A256KW", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(jweHeader("A256KW", "A256GCM", gw, envelope.TypMessage)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe alg dir", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(jweHeader("dir", "A256GCM", gw, envelope.TypMessage)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe alg ECDH-ES direct", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES, jose.A256GCM, f.gwEnc.Public(), gw, ctyOpt()))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe alg RSA-OAEP sha1", withRSA, func(t *testing.T) []byte {
			return []byte(craftedJWE(jweHeader("RSA-OAEP", "A256GCM", f.gwEncRSA.KID(), envelope.TypMessage)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe alg missing", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(fmt.Sprintf(`{"enc":"A256GCM","kid":%q,"cty":"xborder+jws"}`, gw)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe alg not a string", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(craftedJWE(fmt.Sprintf(`{"alg":1,"enc":"A256GCM","kid":%q,"cty":"xborder+jws"}`, gw)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe RSA-OAEP-256 when disabled", envelope.Profile{}, func(t *testing.T) []byte {
			out, err := envelope.Encrypt([]byte(validJWS(t)), f.gwEncRSA.Public())
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jwe enc A128GCM", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A128GCM, f.gwEnc.Public(), gw, ctyOpt()))
		}, envelope.CodeUnsupportedAlgorithm, "enc"},
		{"jwe enc A256CBC-HS512", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256CBC_HS512, f.gwEnc.Public(), gw, ctyOpt()))
		}, envelope.CodeUnsupportedAlgorithm, "enc"},
		{"jwe zip", envelope.Profile{}, func(t *testing.T) []byte {
			opts := ctyOpt()
			opts.Compression = jose.DEFLATE
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), gw, opts))
		}, envelope.CodeUnsupportedAlgorithm, "zip"},
		{"jwe cty missing", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), gw, nil))
		}, envelope.CodeUnsupportedAlgorithm, "cty"},
		{"jwe cty JWT", envelope.Profile{}, func(t *testing.T) []byte {
			opts := (&jose.EncrypterOptions{}).WithContentType("JWT")
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), gw, opts))
		}, envelope.CodeUnsupportedAlgorithm, "cty"},
		{"jwe crit", envelope.Profile{}, func(t *testing.T) []byte {
			opts := ctyOpt().WithHeader("crit", []string{"exp"}).WithHeader("exp", 1)
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), gw, opts))
		}, envelope.CodeUnsupportedAlgorithm, "crit"},
		{"jwe jku", envelope.Profile{}, func(t *testing.T) []byte {
			opts := ctyOpt().WithHeader("jku", "https://attacker.example/jwks")
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), gw, opts))
		}, envelope.CodeUnsupportedAlgorithm, "jku"},

		// unsupported_algorithm: the JWS
		{"jws alg HS256", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, jwsHeader("HS256", snd, envelope.TypMessage)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jws alg none", envelope.Profile{}, func(t *testing.T) []byte {
			h := b64([]byte(jwsHeader("none", snd, envelope.TypMessage)))
			return wrap(t, f, h+"."+b64(mustJSON(t, message()))+".")
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jws alg ES384", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, jwsHeader("ES384", snd, envelope.TypMessage)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jws alg missing", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, fmt.Sprintf(`{"kid":%q,"typ":"xborder+jws"}`, snd)))
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jws EdDSA when disabled", envelope.Profile{}, func(t *testing.T) []byte {
			out, err := envelope.Seal(mustJSON(t, message()), f.senderEd, envelope.TypMessage, f.gwEnc.Public())
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, envelope.CodeUnsupportedAlgorithm, "alg"},
		{"jws typ receipt", envelope.Profile{}, func(t *testing.T) []byte {
			out, err := envelope.Seal(mustJSON(t, message()), f.senderSig, envelope.TypReceipt, f.gwEnc.Public())
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, envelope.CodeUnsupportedAlgorithm, "typ"},
		{"jws typ missing", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, fmt.Sprintf(`{"alg":"ES256","kid":%q}`, snd)))
		}, envelope.CodeUnsupportedAlgorithm, "typ"},
		{"jws typ other case", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, jwsHeader("ES256", snd, "XBORDER+JWS")))
		}, envelope.CodeUnsupportedAlgorithm, "typ"},
		{"jws jwk", envelope.Profile{}, func(t *testing.T) []byte {
			jwk := mustJSON(t, f.senderSig.Public())
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","jwk":%s}`, snd, jwk)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "jwk"},
		{"jws jku", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","jku":"https://attacker.example/jwks"}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "jku"},
		{"jws x5u", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","x5u":"https://attacker.example/cert"}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "x5u"},
		{"jws x5c", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","x5c":["AAAA"]}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "x5c"},
		{"jws crit", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","crit":["b64"],"b64":false}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "crit"},
		{"jws b64 without crit", envelope.Profile{}, func(t *testing.T) []byte {
			h := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder+jws","b64":false}`, snd)
			return wrap(t, f, rawJWS(t, f, h))
		}, envelope.CodeUnsupportedAlgorithm, "b64"},

		// PROTOCOL §3.2: the compact form is strict, so that one signed
		// message has exactly one byte form (a re-sent copy is a retry).
		{"jwe with CRLF after it", envelope.Profile{}, func(t *testing.T) []byte {
			return append(sealMsg(t, f, mustJSON(t, message())), '\r', '\n')
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe with LF inside the ciphertext", envelope.Profile{}, func(t *testing.T) []byte {
			s := string(sealMsg(t, f, mustJSON(t, message())))
			p := strings.Split(s, ".")
			p[3] = p[3][:10] + "\n" + p[3][10:]
			return []byte(strings.Join(p, "."))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe with a space before it", envelope.Profile{}, func(t *testing.T) []byte {
			return append([]byte(" "), sealMsg(t, f, mustJSON(t, message()))...)
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jwe tag with non-zero unused bits", envelope.Profile{}, func(t *testing.T) []byte {
			s := string(sealMsg(t, f, mustJSON(t, message())))
			p := strings.Split(s, ".")
			p[4] = nonCanonical(t, p[4])
			return []byte(strings.Join(p, "."))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws with CRLF inside the payload", envelope.Profile{}, func(t *testing.T) []byte {
			p := strings.Split(validJWS(t), ".")
			p[1] = p[1][:8] + "\r\n" + p[1][8:]
			return wrap(t, f, strings.Join(p, "."))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws with LF after it", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, validJWS(t)+"\n")
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws signature with non-zero unused bits", envelope.Profile{}, func(t *testing.T) []byte {
			p := strings.Split(validJWS(t), ".")
			p[2] = nonCanonical(t, p[2])
			return wrap(t, f, strings.Join(p, "."))
		}, envelope.CodeMalformedEnvelope, "base64"},
		{"jws with padding", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, validJWS(t)+"==")
		}, envelope.CodeMalformedEnvelope, "base64"},

		// decryption_failed
		{"jwe kid missing", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.gwEnc.Public(), "", ctyOpt()))
		}, envelope.CodeDecryptionFailed, "kid"},
		{"jwe kid unknown", envelope.Profile{}, func(t *testing.T) []byte {
			out, err := envelope.Encrypt([]byte(validJWS(t)), f.otherEnc.Public())
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, envelope.CodeDecryptionFailed, "kid"},
		{"jwe kid of a gateway key, encrypted to another", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.ECDH_ES_A256KW, jose.A256GCM, f.otherEnc.Public(), gw, ctyOpt()))
		}, envelope.CodeDecryptionFailed, ""},
		{"jwe kid of an EC key with alg RSA-OAEP-256", withRSA, func(t *testing.T) []byte {
			return []byte(encryptRaw(t, []byte(validJWS(t)), jose.RSA_OAEP_256, jose.A256GCM, f.gwEncRSA.Public(), gw, ctyOpt()))
		}, envelope.CodeDecryptionFailed, "kid"},
		{"jwe tampered ciphertext", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(flipPart(t, string(sealMsg(t, f, mustJSON(t, message()))), 3))
		}, envelope.CodeDecryptionFailed, ""},
		{"jwe tampered tag", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(flipPart(t, string(sealMsg(t, f, mustJSON(t, message()))), 4))
		}, envelope.CodeDecryptionFailed, ""},
		{"jwe tampered iv", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(flipPart(t, string(sealMsg(t, f, mustJSON(t, message()))), 2))
		}, envelope.CodeDecryptionFailed, ""},
		{"jwe tampered encrypted key", envelope.Profile{}, func(t *testing.T) []byte {
			return []byte(flipPart(t, string(sealMsg(t, f, mustJSON(t, message()))), 1))
		}, envelope.CodeDecryptionFailed, ""},
		{"jwe tampered protected header", envelope.Profile{}, func(t *testing.T) []byte {
			s := string(sealMsg(t, f, mustJSON(t, message())))
			h, err := b64dec(strings.Split(s, ".")[0])
			if err != nil {
				t.Fatal(err)
			}
			h = append(h[:len(h)-1], `,"x":1}`...) // still in profile, but not what was authenticated
			return []byte(replacePart(s, 0, b64(h)))
		}, envelope.CodeDecryptionFailed, ""},

		{"jwe epk not on the curve", envelope.Profile{}, func(t *testing.T) []byte {
			s := string(sealMsg(t, f, mustJSON(t, message())))
			raw, err := b64dec(strings.Split(s, ".")[0])
			if err != nil {
				t.Fatal(err)
			}
			var h map[string]any
			if err := json.Unmarshal(raw, &h); err != nil {
				t.Fatal(err)
			}
			h["epk"].(map[string]any)["x"] = b64(bytes.Repeat([]byte{1}, 32))
			return []byte(replacePart(s, 0, b64(mustJSON(t, h))))
		}, envelope.CodeDecryptionFailed, ""},

		// signature_invalid
		{"jws kid unknown", envelope.Profile{}, func(t *testing.T) []byte {
			out, err := envelope.Seal(mustJSON(t, message()), f.strangeSig, envelope.TypMessage, f.gwEnc.Public())
			if err != nil {
				t.Fatal(err)
			}
			return out
		}, envelope.CodeSignatureInvalid, "kid"},
		{"jws kid missing", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, `{"alg":"ES256","typ":"xborder+jws"}`))
		}, envelope.CodeSignatureInvalid, "kid"},
		{"jws kid of the sender, signed by another key", envelope.Profile{}, func(t *testing.T) []byte {
			h := jwsHeader("ES256", snd, envelope.TypMessage)
			return wrap(t, f, signRaw(t, ecdsaKey(f.strangeSig), h, mustJSON(t, message())))
		}, envelope.CodeSignatureInvalid, "signature"},
		{"jws tampered signature", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, flipPart(t, validJWS(t), 2))
		}, envelope.CodeSignatureInvalid, "signature"},
		{"jws tampered payload", envelope.Profile{}, func(t *testing.T) []byte {
			m := message()
			m["to"] = "UN-UNHCR"
			return wrap(t, f, replacePart(validJWS(t), 1, b64(mustJSON(t, m))))
		}, envelope.CodeSignatureInvalid, "signature"},
		{"jws signature too short", envelope.Profile{}, func(t *testing.T) []byte {
			return wrap(t, f, replacePart(validJWS(t), 2, b64(make([]byte, 32))))
		}, envelope.CodeSignatureInvalid, "signature"},
		{"jws EdDSA with the kid of a P-256 key", withEd, func(t *testing.T) []byte {
			return wrap(t, f, signRaw(t, f.senderEd.Signer(), jwsHeader("EdDSA", snd, envelope.TypMessage), mustJSON(t, message())))
		}, envelope.CodeSignatureInvalid, "kid"},
		{"jws ES256 with the kid of an Ed25519 key", withEd, func(t *testing.T) []byte {
			return wrap(t, f, rawJWS(t, f, jwsHeader("ES256", f.senderEd.KID(), envelope.TypMessage)))
		}, envelope.CodeSignatureInvalid, "kid"},

		// invalid_message, through the whole pipeline (field rules: TestParseMessage)
		{"message unknown field", envelope.Profile{}, func(t *testing.T) []byte {
			m := message()
			m["name"] = "x"
			return sealMsg(t, f, mustJSON(t, m))
		}, envelope.CodeInvalidMessage, "an unlisted field"},
		{"message expired", envelope.Profile{}, func(t *testing.T) []byte {
			m := message()
			m["iat"], m["exp"] = now.Unix()-100, now.Unix()
			return sealMsg(t, f, mustJSON(t, m))
		}, envelope.CodeInvalidMessage, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.opener(tc.profile).Open(tc.build(t), now)
			if err == nil {
				t.Fatalf("Open succeeded, want %s", tc.code)
			}
			var e *envelope.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *envelope.Error", err)
			}
			if e.Code != tc.code || e.Detail != tc.detail {
				t.Errorf("got %s (%s), want %s (%s); err: %v", e.Code, e.Detail, tc.code, tc.detail, err)
			}
			if envelope.CodeOf(err) != tc.code {
				t.Errorf("CodeOf = %q", envelope.CodeOf(err))
			}
			if !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Errorf("error text %q lacks the package prefix", err)
			}
		})
	}
}

func TestOpenNoKeys(t *testing.T) {
	f := keys(t)
	env := sealMsg(t, f, mustJSON(t, message()))
	tests := []struct {
		name string
		o    *envelope.Opener
		code envelope.Code
	}{
		{"no decryption keys", &envelope.Opener{Keys: f.registry()}, envelope.CodeDecryptionFailed},
		{"decryption key with use sig", &envelope.Opener{DecryptionKeys: []*envelope.PrivateKey{mustReuse(t, f.gwEnc, envelope.UseSig)}, Keys: f.registry()}, envelope.CodeDecryptionFailed},
		{"no resolver", &envelope.Opener{DecryptionKeys: []*envelope.PrivateKey{f.gwEnc}}, envelope.CodeSignatureInvalid},
		{"resolver knows the kid as an encryption key", &envelope.Opener{DecryptionKeys: []*envelope.PrivateKey{f.gwEnc},
			Keys: registry{f.senderSig.KID(): {sender, mustReuse(t, f.senderSig, envelope.UseEnc).Public()}}}, envelope.CodeSignatureInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.Open(env, now)
			if got := envelope.CodeOf(err); got != tc.code {
				t.Fatalf("code %q, want %q (err %v)", got, tc.code, err)
			}
		})
	}
}

// mustReuse wraps the same key material under another use.
func mustReuse(t *testing.T, k *envelope.PrivateKey, use string) *envelope.PrivateKey {
	t.Helper()
	r, err := envelope.NewPrivateKey(k.Signer(), use)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOpenRoundTrip(t *testing.T) {
	f := keys(t)
	rsaEnc := f.gwEncRSA.Public()
	tests := []struct {
		name    string
		profile envelope.Profile
		sign    *envelope.PrivateKey
		to      *envelope.PublicKey
	}{
		{"ES256 ECDH-ES+A256KW", envelope.Profile{}, f.senderSig, f.gwEnc.Public()},
		{"EdDSA enabled", envelope.Profile{AllowEdDSA: true}, f.senderEd, f.gwEnc.Public()},
		{"RSA-OAEP-256 enabled", envelope.Profile{AllowRSAOAEP256: true}, f.senderSig, rsaEnc},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := message()
			m["type"] = "referral.response"
			m["in_reply_to"] = strings.ToUpper(reqID)
			m["consent"] = map[string]any{"id": "C-1", "extra": map[string]any{"k": 1.5}}
			payload := mustJSON(t, m)
			jws, err := envelope.Sign(payload, tc.sign, envelope.TypMessage)
			if err != nil {
				t.Fatal(err)
			}
			jwe, err := envelope.Encrypt(jws, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.opener(tc.profile).Open(jwe, now)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got.JWS, jws) {
				t.Error("Opened.JWS differs from the signed JWS")
			}
			sum := sha256.Sum256(jws)
			if got.JWSSHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("JWSSHA256 = %s", got.JWSSHA256)
			}
			if got.SenderKID != tc.sign.KID() || got.Signer != sender {
				t.Errorf("SenderKID %s Signer %s", got.SenderKID, got.Signer)
			}
			msg := got.Message
			if msg.ID != msgID || msg.Type != "referral.response" || msg.From != sender || msg.To != receiver ||
				msg.Purpose != "identity-verification" || msg.LegalBasis != "agreement on file" ||
				msg.InReplyTo != reqID || msg.IAT != float64(now.Unix()-10) || msg.EXP != float64(now.Unix()+290) {
				t.Errorf("message fields: %+v", msg)
			}
			if msg.Subject["ref"] != "S-0001" || msg.Subject["sex"] != "F" {
				t.Errorf("subject: %v", msg.Subject)
			}
			if msg.Consent["extra"].(map[string]any)["k"] != json.Number("1.5") {
				t.Errorf("consent extra: %v", msg.Consent)
			}
			if msg.Record == nil || msg.Raw["record"] == nil || len(msg.Raw) != 12 {
				t.Errorf("record %v, raw has %d fields", msg.Record, len(msg.Raw))
			}
		})
	}
}

// A recipient opens a delivery signed by the gateway, and a sender checks a
// receipt: Seal/Decrypt/Verify with the other typ values.
func TestSealDecryptVerify(t *testing.T) {
	f := keys(t)
	gwKeys := func(kid string) (*envelope.PublicKey, bool) {
		if kid == f.gwSig.KID() {
			return f.gwSig.Public(), true
		}
		return nil, false
	}
	recipient := f.otherEnc // stands for the recipient's encryption key
	payload := []byte(`{"delivery_id":"3f1c2a90-0000-4000-8000-0000000000ff","message":{}}`)
	jwe, err := envelope.Seal(payload, f.gwSig, envelope.TypDelivery, recipient.Public())
	if err != nil {
		t.Fatal(err)
	}
	jws, err := envelope.Decrypt(jwe, []*envelope.PrivateKey{recipient}, envelope.Profile{})
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	got, kid, err := envelope.Verify(jws, envelope.TypDelivery, gwKeys, envelope.Profile{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !bytes.Equal(got, payload) || kid != f.gwSig.KID() {
		t.Errorf("payload %q kid %s", got, kid)
	}
	if _, _, err := envelope.Verify(jws, envelope.TypReceipt, gwKeys, envelope.Profile{}); envelope.CodeOf(err) != envelope.CodeUnsupportedAlgorithm {
		t.Errorf("delivery verified as a receipt: %v", err)
	}
	if _, err := envelope.Decrypt(jwe, []*envelope.PrivateKey{f.gwEnc}, envelope.Profile{}); envelope.CodeOf(err) != envelope.CodeDecryptionFailed {
		t.Errorf("decrypted with another key: %v", err)
	}

	receipt, err := envelope.Sign([]byte(`{"id":"x"}`), f.gwSig, envelope.TypReceipt)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := envelope.Verify(receipt, envelope.TypReceipt, gwKeys, envelope.Profile{}); err != nil {
		t.Errorf("receipt: %v", err)
	}
	hdr, err := b64dec(strings.Split(string(receipt), ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"xborder-receipt+jws"}`, f.gwSig.KID())
	if !jsonEqual(t, hdr, []byte(want)) {
		t.Errorf("receipt header %s, want %s", hdr, want)
	}
}

func TestEncryptHeader(t *testing.T) {
	f := keys(t)
	jwe, err := envelope.Encrypt([]byte("a.b.c"), f.gwEnc.Public())
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := b64dec(strings.Split(string(jwe), ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "ECDH-ES+A256KW" || h["enc"] != "A256GCM" || h["kid"] != f.gwEnc.KID() || h["cty"] != "xborder+jws" || h["zip"] != nil || h["epk"] == nil {
		t.Errorf("header %s", hdr)
	}
}

func TestSealRefusesWrongKeys(t *testing.T) {
	f := keys(t)
	tests := []struct {
		name string
		run  func() error
	}{
		{"sign with an encryption key", func() error {
			_, err := envelope.Sign([]byte("{}"), f.gwEnc, envelope.TypMessage)
			return err
		}},
		{"sign with an RSA key", func() error {
			_, err := envelope.Sign([]byte("{}"), mustReuse(t, f.gwEncRSA, envelope.UseSig), envelope.TypMessage)
			return err
		}},
		{"sign without typ", func() error {
			_, err := envelope.Sign([]byte("{}"), f.senderSig, "")
			return err
		}},
		{"encrypt to a signing key", func() error {
			_, err := envelope.Encrypt([]byte("a.b.c"), f.senderSig.Public())
			return err
		}},
		{"encrypt to an Ed25519 key", func() error {
			_, err := envelope.Encrypt([]byte("a.b.c"), mustReuse(t, f.senderEd, envelope.UseEnc).Public())
			return err
		}},
		{"seal with nil key", func() error {
			_, err := envelope.Seal([]byte("{}"), nil, envelope.TypMessage, f.gwEnc.Public())
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	cause := errors.New("cause")
	e := &envelope.Error{Code: envelope.CodeSignatureInvalid, Detail: "kid", Err: cause}
	wrapped := fmt.Errorf("exchange: open: %w", e)
	if envelope.CodeOf(wrapped) != envelope.CodeSignatureInvalid {
		t.Errorf("CodeOf through a wrap: %q", envelope.CodeOf(wrapped))
	}
	if !errors.Is(wrapped, cause) {
		t.Error("Unwrap does not reach the cause")
	}
	if got := e.Error(); got != "envelope: signature_invalid (kid): cause" {
		t.Errorf("Error() = %q", got)
	}
	if envelope.CodeOf(nil) != "" || envelope.CodeOf(cause) != "" {
		t.Error("CodeOf of a plain error is not empty")
	}
}

func TestVerifyNeedsTyp(t *testing.T) {
	f := keys(t)
	jws := signRaw(t, ecdsaKey(f.senderSig), fmt.Sprintf(`{"alg":"ES256","kid":%q}`, f.senderSig.KID()), []byte("{}"))
	anyKey := func(string) (*envelope.PublicKey, bool) { return f.senderSig.Public(), true }
	if _, _, err := envelope.Verify([]byte(jws), "", anyKey, envelope.Profile{}); envelope.CodeOf(err) != envelope.CodeUnsupportedAlgorithm {
		t.Fatalf("a JWS without typ verified against an empty typ: %v", err)
	}
}

// nonCanonical returns seg with the unused low bits of its last character
// set: Go's lenient decoder reads the same bytes, a strict one refuses it.
func nonCanonical(t *testing.T, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var unused int
	switch len(seg) % 4 {
	case 2:
		unused = 4
	case 3:
		unused = 2
	default:
		t.Skipf("segment of length %d has no unused bits", len(seg))
	}
	v := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[v|1<<unused-1])
}
