package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

var someParticipants = []pki.Spec{
	{ID: "KZ-MVD", Name: "Ministry of Internal Affairs, Kazakhstan", Kind: trust.KindMemberState, Country: "KZ",
		Roles: []string{"law-enforcement", "border-management"}},
	{ID: "UN-UNICEF", Name: "UNICEF", Kind: trust.KindUNEntity, Roles: []string{"child-protection"}},
}

func initDir(t *testing.T, opts pki.Options) string {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "dev")
	}
	if opts.Participants == nil {
		opts.Participants = someParticipants
	}
	if err := pki.Init(opts); err != nil {
		t.Fatal(err)
	}
	return opts.Dir
}

// expectedFiles lists what Init must write, with modes.
func expectedFiles(ids ...string) map[string]fs.FileMode {
	want := map[string]fs.FileMode{
		".":                 fs.ModeDir | 0o700,
		"ca.crt":            0o644,
		"ca.key":            0o600,
		"registry.yaml":     0o644,
		"gateway":           fs.ModeDir | 0o700,
		"gateway/tls.crt":   0o644,
		"gateway/tls.key":   0o600,
		"gateway/audit.key": 0o600,
		"ops.token":         0o600,
	}
	for _, id := range append([]string{"gateway"}, ids...) {
		want[id] = fs.ModeDir | 0o700
		want[id+"/sign.jwk"] = 0o600
		want[id+"/enc.jwk"] = 0o600
		want[id+"/sign.pub.jwk"] = 0o644
		want[id+"/enc.pub.jwk"] = 0o644
		want[id+"/tls.crt"] = 0o644
		want[id+"/tls.key"] = 0o600
		if id != "gateway" {
			want[id+"/tls.p12"] = 0o600
		}
	}
	return want
}

func listFiles(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = info.Mode() & (fs.ModeDir | fs.ModePerm)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestInitFilesAndModes(t *testing.T) {
	dir := initDir(t, pki.Options{})
	got := listFiles(t, dir)
	want := expectedFiles("KZ-MVD", "UN-UNICEF")
	for name, mode := range want {
		m, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s missing", name)
		case m != mode:
			t.Errorf("%s: mode %v, want %v", name, m, mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected file %s", name)
		}
	}
	if _, err := trust.Load(filepath.Join(dir, pki.RegistryFile)); err != nil {
		t.Fatalf("trust.Load of the generated registry: %v", err)
	}
}

func readPEM(t *testing.T, path, wantType string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != wantType {
		t.Fatalf("%s: want one %s PEM block", path, wantType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: trailing data", path)
	}
	return b.Bytes
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(readPEM(t, path, "CERTIFICATE"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readKey checks that a key file is a PKCS#8 P-256 key.
func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(readPEM(t, path, "PRIVATE KEY"))
	if err != nil {
		t.Fatalf("%s is not PKCS#8: %v", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		t.Fatalf("%s: %T, want a P-256 key", path, k)
	}
	return ek
}

func TestInitCertificates(t *testing.T) {
	before := time.Now()
	dir := initDir(t, pki.Options{})
	ca := readCert(t, filepath.Join(dir, pki.CACert))
	caKey := readKey(t, filepath.Join(dir, pki.CAKey))
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("ca.crt is not a CA certificate")
	}
	if !caKey.PublicKey.Equal(ca.PublicKey) {
		t.Error("ca.key does not match ca.crt")
	}

	serials := map[string]bool{}
	check := func(name string, c *x509.Certificate) {
		t.Helper()
		if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
			t.Errorf("%s: serial %v is not a positive 128-bit number", name, c.SerialNumber)
		}
		if serials[c.SerialNumber.String()] {
			t.Errorf("%s: serial reused", name)
		}
		serials[c.SerialNumber.String()] = true
		if d := before.Add(-time.Hour).Sub(c.NotBefore).Abs(); d > time.Minute {
			t.Errorf("%s: NotBefore %v, want about an hour ago", name, c.NotBefore)
		}
		if d := c.NotAfter.Sub(before.Add(2 * 365 * 24 * time.Hour)).Abs(); d > time.Minute {
			t.Errorf("%s: NotAfter %v, want two years from now", name, c.NotAfter)
		}
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: want a P-256 key", name)
		}
	}
	check("ca.crt", ca)

	gw := readCert(t, filepath.Join(dir, "gateway", pki.TLSCert))
	check("gateway", gw)
	if gw.Subject.CommonName != pki.GatewayCN {
		t.Errorf("gateway CN %q", gw.Subject.CommonName)
	}
	if !slices.Equal(gw.DNSNames, []string{"localhost"}) || len(gw.IPAddresses) != 2 ||
		!gw.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !gw.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("gateway SANs %v %v", gw.DNSNames, gw.IPAddresses)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := gw.VerifyHostname(host); err != nil {
			t.Errorf("gateway certificate not valid for %s: %v", host, err)
		}
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := gw.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Errorf("gateway certificate for %v: %v", eku, err)
		}
	}
	if !readKey(t, filepath.Join(dir, "gateway", pki.TLSKey)).PublicKey.Equal(gw.PublicKey) {
		t.Error("gateway tls.key does not match tls.crt")
	}

	for _, s := range someParticipants {
		c := readCert(t, filepath.Join(dir, s.ID, pki.TLSCert))
		check(s.ID, c)
		if c.Subject.CommonName != s.ID {
			t.Errorf("%s: CN %q", s.ID, c.Subject.CommonName)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != "urn:xborder:participant:"+s.ID {
			t.Errorf("%s: SAN URIs %v", s.ID, c.URIs)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("%s: EKU %v, want client auth only", s.ID, c.ExtKeyUsage)
		}
		if c.IsCA {
			t.Errorf("%s: client certificate is a CA", s.ID)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", s.ID, err)
		}
		if !readKey(t, filepath.Join(dir, s.ID, pki.TLSKey)).PublicKey.Equal(c.PublicKey) {
			t.Errorf("%s: tls.key does not match tls.crt", s.ID)
		}
	}
}

// rfc7638 computes a P-256 JWK thumbprint independently of the code under
// test.
func rfc7638(x, y string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, `{"crv":"P-256","kty":"EC","x":%q,"y":%q}`, x, y))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestInitJWKs(t *testing.T) {
	dir := initDir(t, pki.Options{})
	seen := map[string]string{}
	for _, who := range []string{"gateway", "KZ-MVD", "UN-UNICEF"} {
		for _, use := range []string{"sig", "enc"} {
			base := map[string]string{"sig": "sign", "enc": "enc"}[use]
			var kids []string
			for _, name := range []string{base + ".jwk", base + ".pub.jwk"} {
				path := filepath.Join(dir, who, name)
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				var k map[string]string
				if err := json.Unmarshal(data, &k); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				private := !strings.HasSuffix(name, ".pub.jwk")
				if _, hasD := k["d"]; hasD != private {
					t.Errorf("%s: private member d present = %v", path, hasD)
				}
				if k["kty"] != "EC" || k["crv"] != "P-256" {
					t.Errorf("%s: kty %q crv %q, want EC P-256", path, k["kty"], k["crv"])
				}
				if k["use"] != use {
					t.Errorf("%s: use %q, want %q", path, k["use"], use)
				}
				if want := rfc7638(k["x"], k["y"]); k["kid"] != want {
					t.Errorf("%s: kid %q, want thumbprint %q", path, k["kid"], want)
				}
				kids = append(kids, k["kid"])
			}
			if kids[0] != kids[1] {
				t.Errorf("%s %s: private and public kid differ", who, use)
			}
			if other, dup := seen[kids[0]]; dup {
				t.Errorf("%s %s: same key as %s", who, use, other)
			}
			seen[kids[0]] = who + " " + use
		}
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, mode := range listFiles(t, dir) {
		if mode.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = fmt.Sprintf("%v %v %s", mode, info.ModTime().UnixNano(), data)
	}
	return out
}

func TestInitIdempotentAndForce(t *testing.T) {
	dir := initDir(t, pki.Options{})
	first := snapshot(t, dir)

	// Again, without Force: nothing changes (not even with other options).
	if err := pki.Init(pki.Options{Dir: dir, Participants: someParticipants[:1]}); err != nil {
		t.Fatal(err)
	}
	if err := pki.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if again := snapshot(t, dir); !mapsEqual(first, again) {
		t.Fatal("Init without Force changed files")
	}

	// Loosen modes: Force must restore them along with new material.
	if err := os.Chmod(filepath.Join(dir, pki.CAKey), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "KZ-MVD"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pki.Init(pki.Options{Dir: dir, Participants: someParticipants, Force: true}); err != nil {
		t.Fatal(err)
	}
	forced := snapshot(t, dir)
	for name := range first {
		if first[name] == forced[name] {
			t.Errorf("%s not regenerated by Force", name)
		}
	}
	modes := listFiles(t, dir)
	if got := modes[pki.CAKey]; got != 0o600 {
		t.Errorf("ca.key mode %v after Force, want 0600", got)
	}
	if got := modes["KZ-MVD"]; got != fs.ModeDir|0o700 {
		t.Errorf("KZ-MVD mode %v after Force, want 0700", got)
	}
	if _, err := trust.Load(filepath.Join(dir, pki.RegistryFile)); err != nil {
		t.Fatal(err)
	}
}

// TestInitResumes: without registry.yaml (written last) a folder counts as
// unfinished and is made again.
func TestInitResumes(t *testing.T) {
	dir := initDir(t, pki.Options{})
	caBefore, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, pki.RegistryFile)); err != nil {
		t.Fatal(err)
	}
	initDir(t, pki.Options{Dir: dir})
	caAfter, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(caBefore, caAfter) {
		t.Error("unfinished folder was not made again")
	}
	if _, err := trust.Load(filepath.Join(dir, pki.RegistryFile)); err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestInitGatewayHosts(t *testing.T) {
	dir := initDir(t, pki.Options{GatewayHosts: []string{"gw.example.org", "10.0.0.5"}})
	gw := readCert(t, filepath.Join(dir, "gateway", pki.TLSCert))
	for _, host := range []string{"gw.example.org", "10.0.0.5"} {
		if err := gw.VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if err := gw.VerifyHostname("localhost"); err == nil {
		t.Error("explicit hosts replace the defaults, but localhost is still named")
	}
}

func TestInitDemoFederationByDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	if err := pki.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	r, err := trust.Load(filepath.Join(dir, pki.RegistryFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Participants()); got != 14 {
		t.Errorf("%d participants, want the 14 of the demo federation", got)
	}
}

func TestInitRefuses(t *testing.T) {
	tests := []struct {
		name  string
		specs []pki.Spec
		dir   string
		want  string
	}{
		{name: "no directory", dir: "-", want: "pki: no directory given"},
		{name: "path in an id", specs: []pki.Spec{{ID: "../KZ-MVD", Name: "x", Kind: trust.KindMemberState, Country: "KZ"}},
			want: `id "../KZ-MVD" does not match`},
		{name: "lower-case id", specs: []pki.Spec{{ID: "kz-mvd", Name: "x", Kind: trust.KindMemberState, Country: "KZ"}},
			want: `id "kz-mvd" does not match`},
		{name: "repeated id", specs: []pki.Spec{someParticipants[0], someParticipants[0]},
			want: "participants[1]: id KZ-MVD listed twice"},
		{name: "unknown role", specs: []pki.Spec{{ID: "KZ-MVD", Name: "x", Kind: trust.KindMemberState, Country: "KZ", Roles: []string{"police"}}},
			want: `unknown role "police"`},
		{name: "wrong country", specs: []pki.Spec{{ID: "KZ-MVD", Name: "x", Kind: trust.KindMemberState, Country: "UZ"}},
			want: `country "UZ" differs from the id prefix "KZ"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dev")
			if tc.dir == "-" {
				dir = ""
			}
			err := pki.Init(pki.Options{Dir: dir, Participants: tc.specs})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init error %v, want %q", err, tc.want)
			}
			if dir != "" {
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Error("Init wrote files before refusing")
				}
			}
		})
	}
}

func TestDemoFederation(t *testing.T) {
	demo := pki.DemoFederation()
	if len(demo) != 14 {
		t.Fatalf("%d participants, want 14 (DOMAIN §8)", len(demo))
	}
	ids := map[string]bool{}
	for _, s := range demo {
		if ids[s.ID] {
			t.Errorf("%s twice", s.ID)
		}
		ids[s.ID] = true
		if !trust.ValidID(s.ID) || s.Name == "" || len(s.Roles) == 0 {
			t.Errorf("%+v incomplete", s)
		}
		for _, r := range s.Roles {
			if !trust.IsRole(r) {
				t.Errorf("%s: unknown role %q", s.ID, r)
			}
		}
		un := strings.HasPrefix(s.ID, "UN-")
		switch {
		case un && (s.Kind != trust.KindUNEntity || s.Country != ""):
			t.Errorf("%s: kind %q country %q", s.ID, s.Kind, s.Country)
		case !un && (s.Kind != trust.KindMemberState || s.Country != s.ID[:2]):
			t.Errorf("%s: kind %q country %q", s.ID, s.Kind, s.Country)
		}
	}
	unoct := demo[13]
	if unoct.ID != "UN-UNOCT" || !slices.Equal(unoct.Roles, []string{"compliance"}) {
		t.Errorf("gateway operator entry: %+v", unoct)
	}
}

func TestSpecsFor(t *testing.T) {
	tests := []struct {
		name string
		ids  []string
		want []pki.Spec
		err  string
	}{
		{name: "demo member", ids: []string{"KZ-MVD"}, want: pki.DemoFederation()[1:2]},
		{name: "unknown member-state", ids: []string{" FR-MI "},
			want: []pki.Spec{{ID: "FR-MI", Name: "FR-MI", Kind: trust.KindMemberState, Country: "FR"}}},
		{name: "unknown UN entity", ids: []string{"UN-UNHCR"},
			want: []pki.Spec{{ID: "UN-UNHCR", Name: "UN-UNHCR", Kind: trust.KindUNEntity}}},
		{name: "invalid id", ids: []string{"KZ-MVD", "kz"}, err: `pki: participant id "kz" does not match`},
		{name: "repeated id", ids: []string{"KZ-MVD", "KZ-MVD"}, err: "pki: participant id KZ-MVD listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pki.SpecsFor(tc.ids)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b pki.Spec) bool {
				return a.ID == b.ID && a.Name == b.Name && a.Kind == b.Kind && a.Country == b.Country && slices.Equal(a.Roles, b.Roles)
			}) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
