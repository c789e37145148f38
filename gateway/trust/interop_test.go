package trust_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

// TestOpenSSLInterop: certificates and keys made by another tool (the
// openssl CLI, with the commands of certs/README.md) and hand-written JWKs
// are accepted by Load, Identify and a real mTLS handshake (PROTOCOL §7).
func TestOpenSSLInterop(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not on PATH; install it (e.g. apt-get install openssl): this test proves that " +
			"certificates made by other tools work (PROTOCOL §7) and must not be skipped")
	}
	dir := t.TempDir()
	openssl := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	genkey := func(path string) {
		t.Helper()
		openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
	}
	pubKey := func(keyPath string) *ecdsa.PublicKey {
		t.Helper()
		pubPath := strings.TrimSuffix(keyPath, ".key") + ".pub.pem"
		openssl("pkey", "-in", keyPath, "-pubout", "-out", pubPath)
		data, err := os.ReadFile(filepath.Join(dir, pubPath))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		if b == nil {
			t.Fatalf("%s: no PEM", pubPath)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return k.(*ecdsa.PublicKey)
	}

	// A national CA.
	genkey("national-ca.key")
	openssl("req", "-x509", "-new", "-key", "national-ca.key", "-sha256", "-days", "730",
		"-subj", "/C=KZ/O=Example National PKI/CN=Example National CA",
		"-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-out", "national-ca.crt")

	// Client certificates: KZ-MVD with CN and SAN URI (the README's form),
	// KZ-MJ with a descriptive CN and the id in the SAN URI only.
	client := func(id, cn string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, id), 0o700); err != nil {
			t.Fatal(err)
		}
		ext := "basicConstraints=critical,CA:FALSE\n" +
			"keyUsage=critical,digitalSignature\n" +
			"extendedKeyUsage=clientAuth\n" +
			"subjectAltName=URI:urn:xborder:participant:" + id + "\n"
		if err := os.WriteFile(filepath.Join(dir, id, "client.ext"), []byte(ext), 0o644); err != nil {
			t.Fatal(err)
		}
		genkey(id + "/tls.key")
		openssl("req", "-new", "-key", id+"/tls.key", "-subj", "/C=KZ/O=Example ministry/CN="+cn, "-out", id+"/tls.csr")
		openssl("x509", "-req", "-in", id+"/tls.csr", "-CA", "national-ca.crt", "-CAkey", "national-ca.key",
			"-CAcreateserial", "-days", "365", "-sha256", "-extfile", id+"/client.ext", "-out", id+"/tls.crt")
		// JOSE keys made with openssl, written as JWKs by hand (as any
		// JOSE tool would), with a kid that is not the thumbprint.
		genkey(id + "/sign.key")
		genkey(id + "/enc.key")
	}
	client("KZ-MVD", "KZ-MVD")
	client("KZ-MJ", "Civil registry exchange client")

	kids := map[string]string{}
	reg := &trust.File{TrustAnchors: []string{"national-ca.crt"}}
	for _, p := range []struct{ id, name, role string }{
		{"KZ-MVD", "Ministry of Internal Affairs, Kazakhstan", "law-enforcement"},
		{"KZ-MJ", "Ministry of Justice, Kazakhstan", "civil-registry"},
	} {
		kids[p.id] = jwkFor(t, filepath.Join(dir, p.id, "sign.pub.jwk"), pubKey(p.id+"/sign.key"), "sig")
		jwkFor(t, filepath.Join(dir, p.id, "enc.pub.jwk"), pubKey(p.id+"/enc.key"), "enc")
		reg.Participants = append(reg.Participants, trust.FileParticipant{
			ID: p.id, Name: p.name, Kind: trust.KindMemberState, Country: "KZ", Roles: []string{p.role},
			SigningKeys: []string{p.id + "/sign.pub.jwk"}, EncryptionKey: p.id + "/enc.pub.jwk",
			Delivery: trust.Delivery{Adapter: trust.AdapterInbox},
		})
	}
	path := filepath.Join(dir, "registry.yaml")
	writeRegistryFile(t, path, reg)
	r := mustLoad(t, path)

	for id, kid := range kids {
		if owner, key, ok := r.SigningKey(kid); !ok || owner != id || key.KID() != kid {
			t.Errorf("%s: signing key not found by its thumbprint %s", id, kid)
		}
	}
	if _, _, ok := r.SigningKey("label-chosen-by-the-tool"); ok {
		t.Error("the kid written in the JWK was trusted instead of the thumbprint")
	}

	// Identify from a connection state, then over a real handshake.
	gwDir := newPKI(t, "UN-IOM") // only for the gateway's server certificate
	server := r.TLSConfig(loadPair(t, gwDir, pki.GatewayDir))
	for _, id := range []string{"KZ-MVD", "KZ-MJ"} {
		t.Run(id, func(t *testing.T) {
			cert := readCert(t, filepath.Join(dir, id, "tls.crt"))
			if got, err := r.Identify(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}); err != nil || got != id {
				t.Fatalf("Identify = %q, %v", got, err)
			}
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, id, "tls.crt"), filepath.Join(dir, id, "tls.key"))
			if err != nil {
				t.Fatal(err)
			}
			state, serverErr, clientErr := handshake(t, server, clientConfig(t, gwDir, &pair))
			if serverErr != nil || clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", serverErr, clientErr)
			}
			if got, err := r.Identify(&state); err != nil || got != id {
				t.Fatalf("Identify after handshake = %q, %v", got, err)
			}
		})
	}
}
