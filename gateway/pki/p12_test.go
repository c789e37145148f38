package pki_test

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/xborder/xborder/gateway/pki"
)

func TestInitWritesBrowserBundles(t *testing.T) {
	dir := initDir(t, pki.Options{Participants: mustSpecs(t, "UN-UNOCT")})
	raw, err := os.ReadFile(filepath.Join(dir, "UN-UNOCT", pki.TLSP12))
	if err != nil {
		t.Fatal(err)
	}
	key, cert, cas, err := pkcs12.DecodeChain(raw, pki.DevP12Password)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := key.(*ecdsa.PrivateKey); !ok || cert.Subject.CommonName != "UN-UNOCT" || len(cas) != 1 || !cas[0].IsCA {
		t.Errorf("key %T, cert %s, %d CA certificates", key, cert.Subject, len(cas))
	}
	if want := readCert(t, filepath.Join(dir, "UN-UNOCT", "tls.crt")); !want.Equal(cert) {
		t.Error("the bundle's certificate is not tls.crt")
	}
}

func mustSpecs(t *testing.T, ids ...string) []pki.Spec {
	t.Helper()
	s, err := pki.SpecsFor(ids)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
