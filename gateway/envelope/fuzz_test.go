package envelope_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/xborder/xborder/gateway/envelope"
)

const seedDir = "testdata/fuzz-seeds"

var writeSeeds = flag.Bool("write-fuzz-seeds", false, "rewrite "+seedDir+" with envelopes made with throwaway keys")

// FuzzOpen feeds each input to Open three ways: as the JWE, as the plaintext
// of a valid JWE (reaching Verify), and as the message (ParseMessage). Open
// must never panic, and every error must carry a code.
func FuzzOpen(f *testing.F) {
	fx := keys(f)
	files, err := filepath.Glob(filepath.Join(seedDir, "*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatalf("no seeds in %s", seedDir)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Seeds that open with this run's keys.
	valid := mustJSON(f, message())
	f.Add(sealMsg(f, fx, valid))
	jws, err := envelope.Sign(valid, fx.senderSig, envelope.TypMessage)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(jws)
	f.Add(valid)

	o := fx.opener(envelope.Profile{AllowEdDSA: true, AllowRSAOAEP256: true})
	check := func(t *testing.T, how string, opened *envelope.Opened, err error) {
		if err != nil {
			if envelope.CodeOf(err) == "" {
				t.Fatalf("%s: error without code: %v", how, err)
			}
			if opened != nil {
				t.Fatalf("%s: result with an error", how)
			}
			return
		}
		if opened.Message == nil || opened.Message.Raw == nil || opened.JWSSHA256 == "" || opened.Signer != sender {
			t.Fatalf("%s: incomplete result %+v", how, opened)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opened, err := o.Open(data, now)
		check(t, "jwe", opened, err)

		jwe, err := envelope.Encrypt(data, fx.gwEnc.Public())
		if err != nil {
			t.Fatal(err)
		}
		opened, err = o.Open(jwe, now)
		check(t, "jws", opened, err)

		if _, err := envelope.ParseMessage(data, now, o.Profile); err != nil && envelope.CodeOf(err) == "" {
			t.Fatalf("message: error without code: %v", err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seeds (go test -run
// TestWriteFuzzSeeds -write-fuzz-seeds). The keys are thrown away: the
// seeds are valid in shape, and FuzzOpen adds envelopes that open.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("use -write-fuzz-seeds to rewrite the seeds")
	}
	fx := keys(t)
	valid := mustJSON(t, message())
	jws, err := envelope.Sign(valid, fx.senderSig, envelope.TypMessage)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := envelope.Seal(valid, fx.senderEd, envelope.TypMessage, fx.gwEnc.Public())
	if err != nil {
		t.Fatal(err)
	}
	rsaJWE, err := envelope.Seal(valid, fx.senderSig, envelope.TypMessage, fx.gwEncRSA.Public())
	if err != nil {
		t.Fatal(err)
	}
	zipOpts := (&jose.EncrypterOptions{Compression: jose.DEFLATE}).WithContentType(envelope.TypMessage)
	seeds := map[string][]byte{
		"es256-ecdh.jwe":    sealMsg(t, fx, valid),
		"eddsa-ecdh.jwe":    ed,
		"rsa-oaep-256.jwe":  rsaJWE,
		"zip.jwe":           []byte(encryptRaw(t, jws, jose.ECDH_ES_A256KW, jose.A256GCM, fx.gwEnc.Public(), fx.gwEnc.KID(), zipOpts)),
		"message.jws":       jws,
		"message.json":      valid,
		"crafted-alg.jwe":   []byte(craftedJWE(jweHeader("A256KW", "A256GCM", fx.gwEnc.KID(), envelope.TypMessage))),
		"duplicate-key.jwe": []byte(craftedJWE(`{"alg":"ECDH-ES+A256KW","alg":"dir"}`)),
	}
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		if err := os.WriteFile(filepath.Join(seedDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
