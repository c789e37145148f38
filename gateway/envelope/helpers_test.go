package envelope_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/xborder/xborder/gateway/envelope"
)

// now is the fixed clock of the tests.
var now = time.Unix(1795348800, 0).UTC()

const (
	msgID    = "3f1c2a90-0000-4000-8000-000000000001"
	reqID    = "3f1c2a90-0000-4000-8000-000000000002"
	sender   = "UN-UNICEF"
	receiver = "KZ-MJ"
)

var b64 = base64.RawURLEncoding.EncodeToString

// fixture holds throwaway keys: the gateway's encryption key, the sender's
// signing key, and a few others. Keys are made once per test binary.
type fixture struct {
	gwEnc      *envelope.PrivateKey // P-256, enc
	gwEncRSA   *envelope.PrivateKey // RSA 2048, enc
	otherEnc   *envelope.PrivateKey // P-256, enc, not the gateway's
	senderSig  *envelope.PrivateKey // P-256, sig, registered to sender
	senderEd   *envelope.PrivateKey // Ed25519, sig, registered to sender
	strangeSig *envelope.PrivateKey // P-256, sig, not registered
	gwSig      *envelope.PrivateKey // P-256, sig, the gateway's (deliveries, receipts)
}

var (
	fixOnce sync.Once
	fix     *fixture
)

func mustKey(k *envelope.PrivateKey, err error) *envelope.PrivateKey {
	if err != nil {
		panic(err)
	}
	return k
}

func keys(tb testing.TB) *fixture {
	tb.Helper()
	fixOnce.Do(func() {
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		r, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		fix = &fixture{
			gwEnc:      mustKey(envelope.GenerateP256(envelope.UseEnc)),
			gwEncRSA:   mustKey(envelope.NewPrivateKey(r, envelope.UseEnc)),
			otherEnc:   mustKey(envelope.GenerateP256(envelope.UseEnc)),
			senderSig:  mustKey(envelope.GenerateP256(envelope.UseSig)),
			senderEd:   mustKey(envelope.NewPrivateKey(ed, envelope.UseSig)),
			strangeSig: mustKey(envelope.GenerateP256(envelope.UseSig)),
			gwSig:      mustKey(envelope.GenerateP256(envelope.UseSig)),
		}
	})
	return fix
}

// registry is a SigningKeyResolver over a fixed map.
type registry map[string]struct {
	owner string
	key   *envelope.PublicKey
}

func (r registry) SigningKey(kid string) (string, *envelope.PublicKey, bool) {
	e, ok := r[kid]
	return e.owner, e.key, ok
}

func (f *fixture) registry() registry {
	r := registry{}
	for _, k := range []*envelope.PrivateKey{f.senderSig, f.senderEd} {
		r[k.KID()] = struct {
			owner string
			key   *envelope.PublicKey
		}{sender, k.Public()}
	}
	return r
}

func (f *fixture) opener(p envelope.Profile) *envelope.Opener {
	return &envelope.Opener{
		Profile:        p,
		DecryptionKeys: []*envelope.PrivateKey{f.gwEnc, f.gwEncRSA},
		Keys:           f.registry(),
	}
}

// message returns a valid message as a map, to be altered by a test.
func message() map[string]any {
	return map[string]any{
		"id":          msgID,
		"type":        "identity.verification.request",
		"from":        sender,
		"to":          receiver,
		"purpose":     "identity-verification",
		"legal_basis": "agreement on file",
		"iat":         now.Unix() - 10,
		"exp":         now.Unix() + 290,
		"subject":     map[string]any{"ref": "S-0001", "sex": "F"},
		"record":      map[string]any{"requested_assertions": []any{"identity_match"}},
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signRaw makes a compact JWS with exactly the protected header given, signed
// with an ECDSA P-256 or Ed25519 key.
func signRaw(tb testing.TB, key crypto.Signer, header string, payload []byte) string {
	tb.Helper()
	input := b64([]byte(header)) + "." + b64(payload)
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		h := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			tb.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	default:
		tb.Fatalf("signRaw: key type %T", key)
	}
	return input + "." + b64(sig)
}

// encryptRaw makes a compact JWE with go-jose directly, so tests can set
// what Encrypt never would.
func encryptRaw(tb testing.TB, plaintext []byte, alg jose.KeyAlgorithm, enc jose.ContentEncryption,
	to *envelope.PublicKey, kid string, opts *jose.EncrypterOptions) string {
	tb.Helper()
	e, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: alg, Key: to.CryptoKey(), KeyID: kid}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := e.Encrypt(plaintext)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// craftedJWE is a JWE-shaped string with the given protected header and
// dummy other parts: enough for the header checks, which come first.
func craftedJWE(header string) string {
	return b64([]byte(header)) + ".AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
}

// replacePart replaces part i of a compact serialization.
func replacePart(s string, i int, part string) string {
	parts := strings.Split(s, ".")
	parts[i] = part
	return strings.Join(parts, ".")
}

// flipPart flips a bit in the decoded part i of a compact serialization.
func flipPart(tb testing.TB, s string, i int) string {
	tb.Helper()
	parts := strings.Split(s, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil || len(raw) == 0 {
		tb.Fatalf("flipPart %d: %v", i, err)
	}
	raw[len(raw)/2] ^= 0x01
	parts[i] = b64(raw)
	return strings.Join(parts, ".")
}

func ecdsaKey(k *envelope.PrivateKey) *ecdsa.PrivateKey { return k.Signer().(*ecdsa.PrivateKey) }

func b64dec(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// nest returns n levels of JSON nesting, alternating objects and arrays.
func nest(n int) any {
	var v any = "leaf"
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			v = []any{v}
		} else {
			v = map[string]any{"k": v}
		}
	}
	return v
}

func jsonEqual(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		tb.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}
