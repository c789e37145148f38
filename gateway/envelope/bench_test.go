package envelope_test

import (
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/xborder/xborder/gateway/envelope"
)

// message2K is a valid message of about 2 KiB of JSON.
func message2K(tb testing.TB) []byte {
	m := message()
	m["record"] = map[string]any{"service_type": "mhpss", "priority": "high", "notes": ""}
	base := len(mustJSON(tb, m))
	m["record"].(map[string]any)["notes"] = strings.Repeat("n", 2048-base)
	b := mustJSON(tb, m)
	if len(b) != 2048 {
		tb.Fatalf("message is %d bytes", len(b))
	}
	return b
}

func BenchmarkOpen(b *testing.B) {
	f := keys(b)
	jwe := sealMsg(b, f, message2K(b))
	o := f.opener(envelope.Profile{})
	b.SetBytes(int64(len(jwe)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Open(jwe, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	f := keys(b)
	payload := message2K(b)
	to := f.gwEnc.Public()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envelope.Seal(payload, f.senderSig, envelope.TypMessage, to); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCryptoFloor is go-jose alone doing what the gateway must do for
// one message: open the JWE and verify the JWS it receives ("open"), then
// sign a JWS and seal it in a JWE for the recipient ("seal"); "all" is both.
// Open + Seal should stay within about 1.5× of "all".
func BenchmarkCryptoFloor(b *testing.B) {
	f := keys(b)
	payload := message2K(b)
	jwe := string(sealMsg(b, f, payload))
	encKey := f.gwEnc.Signer()
	sigKey := f.senderSig.Signer()
	sigPub := f.senderSig.Public().CryptoKey()
	to := f.otherEnc.Public().CryptoKey()
	open := func(b *testing.B) {
		obj, err := jose.ParseEncryptedCompact(jwe, []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil {
			b.Fatal(err)
		}
		jws, err := obj.Decrypt(encKey)
		if err != nil {
			b.Fatal(err)
		}
		sig, err := jose.ParseSignedCompact(string(jws), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sig.Verify(sigPub); err != nil {
			b.Fatal(err)
		}
	}
	seal := func(b *testing.B) {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: sigKey}, nil)
		if err != nil {
			b.Fatal(err)
		}
		out, err := signer.Sign(payload)
		if err != nil {
			b.Fatal(err)
		}
		compact, err := out.CompactSerialize()
		if err != nil {
			b.Fatal(err)
		}
		enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: to}, nil)
		if err != nil {
			b.Fatal(err)
		}
		sealed, err := enc.Encrypt([]byte(compact))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sealed.CompactSerialize(); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		run  func(b *testing.B)
	}{
		{"all", func(b *testing.B) { open(b); seal(b) }},
		{"open", open},
		{"seal", seal},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.run(b)
			}
		})
	}
}

// BenchmarkParseMessage isolates the strict decoding and validation of the
// 2 KiB message.
func BenchmarkParseMessage(b *testing.B) {
	payload := message2K(b)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envelope.ParseMessage(payload, now, envelope.Profile{}); err != nil {
			b.Fatal(err)
		}
	}
}
