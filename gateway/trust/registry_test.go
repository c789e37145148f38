package trust_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

func TestLoadDemoFederation(t *testing.T) {
	dir := t.TempDir()
	if err := pki.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	r := mustLoad(t, filepath.Join(dir, pki.RegistryFile))

	demo := pki.DemoFederation()
	ps := r.Participants()
	if len(ps) != len(demo) {
		t.Fatalf("got %d participants, want %d", len(ps), len(demo))
	}
	ids := make([]string, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("Participants not sorted by id: %v", ids)
	}

	for _, s := range demo {
		p, ok := r.Participant(s.ID)
		if !ok {
			t.Errorf("%s missing", s.ID)
			continue
		}
		if p.Name != s.Name || p.Kind != s.Kind || p.Country != s.Country || !slices.Equal(p.Roles, s.Roles) {
			t.Errorf("%s: got %+v, want %+v", s.ID, p, s)
		}
		if p.Delivery.Adapter != trust.AdapterInbox {
			t.Errorf("%s: delivery %q, want inbox", s.ID, p.Delivery.Adapter)
		}
		if len(p.SigningKeys) != 1 || p.EncryptionKey == nil {
			t.Fatalf("%s: keys not loaded", s.ID)
		}
		owner, key, ok := r.SigningKey(p.SigningKeys[0].KID())
		if !ok || owner != s.ID || key.KID() != p.SigningKeys[0].KID() {
			t.Errorf("%s: SigningKey(%s) = %q, %v", s.ID, p.SigningKeys[0].KID(), owner, ok)
		}
		// An encryption key is not a signing key.
		if _, _, ok := r.SigningKey(p.EncryptionKey.KID()); ok {
			t.Errorf("%s: encryption key resolves as a signing key", s.ID)
		}
	}
	if _, ok := r.Participant("KZ-NOPE"); ok {
		t.Error("unknown participant found")
	}
	if _, _, ok := r.SigningKey("no-such-kid"); ok {
		t.Error("unknown kid resolved")
	}
	if p, _ := r.Participant("UN-UNICEF"); !p.HasRole("child-protection") || p.HasRole("consular") {
		t.Errorf("HasRole wrong for UN-UNICEF: %v", p.Roles)
	}
	if n := len(r.Anchors()); n != 1 {
		t.Errorf("%d anchors, want 1", n)
	}
}

func TestLoadValidation(t *testing.T) {
	dir := newPKI(t, "KZ-MVD", "UN-UNICEF")
	base := filepath.Join(dir, pki.RegistryFile)

	// Key files that the cases point at.
	encAsSig := filepath.Join(dir, "extra-enc.pub.jwk")
	writeJWK(t, encAsSig, envelope.UseEnc, false)
	sigAsEnc := filepath.Join(dir, "extra-sig.pub.jwk")
	writeJWK(t, sigAsEnc, envelope.UseSig, false)
	edEnc := filepath.Join(dir, "ed25519.pub.jwk")
	{
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, err := envelope.NewPrivateKey(priv, envelope.UseEnc)
		if err != nil {
			t.Fatal(err)
		}
		data, err := k.Public().MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(edEnc, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	type mutate func(f *trust.File)
	mvd := func(fn func(p *trust.FileParticipant)) mutate {
		return func(f *trust.File) { fn(&f.Participants[0]) }
	}
	unicef := func(fn func(p *trust.FileParticipant)) mutate {
		return func(f *trust.File) { fn(&f.Participants[1]) }
	}

	tests := []struct {
		name   string
		mutate mutate
		raw    string // used instead of mutate when set
		want   string
	}{
		{name: "lower-case id", mutate: mvd(func(p *trust.FileParticipant) { p.ID = "kz-mvd" }),
			want: "participants[0] (kz-mvd): id does not match"},
		{name: "agency code too short", mutate: mvd(func(p *trust.FileParticipant) { p.ID = "KZ-M" }),
			want: "id does not match"},
		{name: "missing id", mutate: mvd(func(p *trust.FileParticipant) { p.ID = "" }),
			want: "participants[0] (): id is missing"},
		{name: "duplicate id", mutate: func(f *trust.File) {
			d := f.Participants[0]
			d.SigningKeys, d.EncryptionKey = []string{filepath.Base(sigAsEnc)}, filepath.Base(encAsSig)
			f.Participants = append(f.Participants, d)
		}, want: "participants[2] (KZ-MVD): duplicate id (first at participants[0])"},
		{name: "missing name", mutate: mvd(func(p *trust.FileParticipant) { p.Name = " " }),
			want: "participants[0] (KZ-MVD): name is missing"},
		{name: "unknown kind", mutate: mvd(func(p *trust.FileParticipant) { p.Kind = "ministry" }),
			want: `unknown kind "ministry"`},
		{name: "missing kind", mutate: mvd(func(p *trust.FileParticipant) { p.Kind = "" }),
			want: "kind is missing"},
		{name: "country not alpha-2", mutate: mvd(func(p *trust.FileParticipant) { p.Country = "KAZ" }),
			want: "country must be an ISO 3166-1 alpha-2 code for a member-state"},
		{name: "member-state without country", mutate: mvd(func(p *trust.FileParticipant) { p.Country = "" }),
			want: "country must be an ISO 3166-1 alpha-2 code for a member-state"},
		{name: "country differs from id prefix", mutate: mvd(func(p *trust.FileParticipant) { p.Country = "UZ" }),
			want: `country "UZ" differs from the id prefix "KZ"`},
		{name: "member-state with UN prefix", mutate: unicef(func(p *trust.FileParticipant) {
			p.Kind, p.Country = trust.KindMemberState, "UN"
		}), want: "a member-state id cannot start with UN-"},
		{name: "un-entity without UN prefix", mutate: mvd(func(p *trust.FileParticipant) {
			p.Kind, p.Country = trust.KindUNEntity, ""
		}), want: "a un-entity id must start with UN-"},
		{name: "unknown role", mutate: mvd(func(p *trust.FileParticipant) { p.Roles = []string{"police"} }),
			want: `unknown role "police"`},
		{name: "role twice", mutate: mvd(func(p *trust.FileParticipant) { p.Roles = []string{"consular", "consular"} }),
			want: `role "consular" listed twice`},
		{name: "no signing key", mutate: mvd(func(p *trust.FileParticipant) { p.SigningKeys = nil }),
			want: "participants[0] (KZ-MVD): at least one signing key is required"},
		{name: "no encryption key", mutate: mvd(func(p *trust.FileParticipant) { p.EncryptionKey = "" }),
			want: "participants[0] (KZ-MVD): encryption_key is required"},
		{name: "signing key with use enc", mutate: mvd(func(p *trust.FileParticipant) {
			p.SigningKeys = []string{filepath.Base(encAsSig)}
		}), want: `signing_keys[0]: key use is "enc", want "sig"`},
		{name: "encryption key with use sig", mutate: mvd(func(p *trust.FileParticipant) {
			p.EncryptionKey = filepath.Base(sigAsEnc)
		}), want: `encryption_key: key use is "sig", want "enc"`},
		{name: "Ed25519 encryption key", mutate: mvd(func(p *trust.FileParticipant) {
			p.EncryptionKey = filepath.Base(edEnc)
		}), want: "encryption_key: key type cannot be used for encryption"},
		{name: "kid shared between participants", mutate: unicef(func(p *trust.FileParticipant) {
			p.SigningKeys = []string{"KZ-MVD/sign.pub.jwk"}
		}), want: "participants[1] (UN-UNICEF): signing_keys[0]: key"},
		{name: "same key listed twice", mutate: mvd(func(p *trust.FileParticipant) {
			p.SigningKeys = []string{"KZ-MVD/sign.pub.jwk", "KZ-MVD/sign.pub.jwk"}
		}), want: "signing_keys[1]: key"},
		{name: "private JWK in the registry", mutate: mvd(func(p *trust.FileParticipant) {
			p.SigningKeys = []string{"KZ-MVD/sign.jwk"}
		}), want: "holds a private key"},
		{name: "missing key file", mutate: mvd(func(p *trust.FileParticipant) {
			p.EncryptionKey = "KZ-MVD/nope.jwk"
		}), want: "encryption_key (KZ-MVD/nope.jwk): no such file or directory"},
		{name: "unknown adapter", mutate: mvd(func(p *trust.FileParticipant) { p.Delivery.Adapter = "ftp" }),
			want: `delivery: unknown adapter "ftp"`},
		{name: "missing adapter", mutate: mvd(func(p *trust.FileParticipant) { p.Delivery.Adapter = "" }),
			want: "delivery: adapter is missing"},
		{name: "https without url", mutate: mvd(func(p *trust.FileParticipant) { p.Delivery.Adapter = "https" }),
			want: "https: url is required"},
		{name: "https with http url", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery = trust.Delivery{Adapter: "https", URL: "http://kz.example/xborder"}
		}), want: "url must be an absolute https:// url"},
		{name: "file without dir", mutate: mvd(func(p *trust.FileParticipant) { p.Delivery.Adapter = "file" }),
			want: "file: dir is required"},
		// What the adapters would refuse at the first delivery is refused
		// at load (the adapters' own checks).
		{name: "https to a private address", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery = trust.Delivery{Adapter: "https", URL: "https://10.1.2.3/xborder"}
		}), want: "address not allowed"},
		{name: "https to loopback", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery = trust.Delivery{Adapter: "https", URL: "https://127.0.0.1:9443/"}
		}), want: "address not allowed"},
		{name: "https with a fragment", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery = trust.Delivery{Adapter: "https", URL: "https://kz.example/x#frag"}
		}), want: "fragment"},
		{name: "file dir that is a file", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery = trust.Delivery{Adapter: "file", Dir: "registry.yaml"}
		}), want: "is not a directory"},
		{name: "inbox with url", mutate: mvd(func(p *trust.FileParticipant) {
			p.Delivery.URL = "https://kz.example/"
		}), want: "the inbox adapter takes neither url nor dir"},
		{name: "no trust anchor", mutate: func(f *trust.File) { f.TrustAnchors = nil },
			want: "trust: no trust anchor"},
		{name: "anchor is not a CA", mutate: func(f *trust.File) { f.TrustAnchors = []string{"KZ-MVD/tls.crt"} },
			want: "trust_anchors[0] (KZ-MVD/tls.crt): not a CA certificate"},
		{name: "anchor is not PEM", mutate: func(f *trust.File) { f.TrustAnchors = []string{"KZ-MVD/sign.pub.jwk"} },
			want: "trust_anchors[0] (KZ-MVD/sign.pub.jwk): no PEM certificate found"},
		{name: "pinned cert names another participant", mutate: mvd(func(p *trust.FileParticipant) {
			p.TLSCert = "UN-UNICEF/tls.crt"
		}), want: "tls_cert does not name this participant"},
		{name: "pinned CA is not a CA", mutate: mvd(func(p *trust.FileParticipant) {
			p.TLSCA = "KZ-MVD/tls.crt"
		}), want: "tls_ca is not a CA certificate"},
		{name: "both pins", mutate: mvd(func(p *trust.FileParticipant) {
			p.TLSCert, p.TLSCA = "KZ-MVD/tls.crt", "ca.crt"
		}), want: "tls_cert and tls_ca are exclusive"},
		{name: "unknown key", raw: "trust_anchors: [ca.crt]\ncolour: blue\nparticipants: []\n",
			want: "field colour not found"},
		{name: "unknown participant key", raw: "trust_anchors: [ca.crt]\nparticipants:\n  - id: KZ-MVD\n    role: [consular]\n",
			want: "field role not found"},
		{name: "empty file", raw: "\n", want: "trust: registry file is empty"},
		{name: "two documents", raw: "trust_anchors: [ca.crt]\n---\ntrust_anchors: [ca.crt]\n",
			want: "more than one YAML document"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "case"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".yaml")
			if tc.raw != "" {
				if err := os.WriteFile(path, []byte(tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				f := readRegistryFile(t, base)
				tc.mutate(f)
				writeRegistryFile(t, path, f)
			}
			r, err := trust.Load(path)
			if err == nil {
				t.Fatalf("Load accepted the registry (%d participants)", len(r.Participants()))
			}
			ps := problems(err)
			if len(ps) != 1 {
				t.Errorf("want exactly one problem, got %d:\n%v", len(ps), err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(ps[0].Error(), "trust: ") {
				t.Errorf("problem %q does not start with the package name", ps[0])
			}
		})
	}
}

// TestLoadReportsEveryProblem: one bad registry, every problem in one error.
func TestLoadReportsEveryProblem(t *testing.T) {
	dir := newPKI(t, "KZ-MVD", "UN-UNICEF")
	f := readRegistryFile(t, filepath.Join(dir, pki.RegistryFile))
	f.Participants[0].Kind = "ministry"
	f.Participants[0].Roles = []string{"police"}
	f.Participants[1].Delivery.Adapter = "ftp"
	f.TrustAnchors = nil
	path := filepath.Join(dir, "bad.yaml")
	writeRegistryFile(t, path, f)

	_, err := trust.Load(path)
	for _, want := range []string{`unknown kind "ministry"`, `unknown role "police"`, `unknown adapter "ftp"`, "no trust anchor"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not report %q", err, want)
		}
	}
	if n := len(problems(err)); n != 4 {
		t.Errorf("%d problems, want 4", n)
	}
}

func TestLoadResolvesPaths(t *testing.T) {
	dir := newPKI(t, "KZ-MVD")
	f := readRegistryFile(t, filepath.Join(dir, pki.RegistryFile))
	// Absolute paths are kept, relative ones are relative to the file.
	f.TrustAnchors = []string{filepath.Join(dir, pki.CACert)}
	f.Participants[0].Delivery = trust.Delivery{Adapter: trust.AdapterFile, Dir: "drop/KZ-MVD"}
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	f.Participants[0].SigningKeys = []string{"../KZ-MVD/sign.pub.jwk"}
	f.Participants[0].EncryptionKey = "../KZ-MVD/enc.pub.jwk"
	path := filepath.Join(sub, "registry.yaml")
	writeRegistryFile(t, path, f)

	r := mustLoad(t, path)
	p, _ := r.Participant("KZ-MVD")
	if want := filepath.Join(sub, "drop/KZ-MVD"); p.Delivery.Dir != want {
		t.Errorf("delivery dir %q, want %q", p.Delivery.Dir, want)
	}
}

func TestNew(t *testing.T) {
	sign, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := envelope.GenerateP256(envelope.UseEnc)
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCA(t, "in-memory CA")
	p := &trust.Participant{
		ID: "UZ-MFA", Name: "Ministry of Foreign Affairs, Uzbekistan", Kind: trust.KindMemberState,
		Country: "UZ", Roles: []string{"consular"},
		SigningKeys: []*envelope.PublicKey{sign.Public()}, EncryptionKey: enc.Public(),
		Delivery: trust.Delivery{Adapter: trust.AdapterHTTPS, URL: "https://127.0.0.1:9443/in", AllowPrivate: true},
	}
	r, err := trust.New([]*x509.Certificate{root.cert}, []*trust.Participant{p})
	if err != nil {
		t.Fatal(err)
	}
	if owner, _, ok := r.SigningKey(sign.KID()); !ok || owner != "UZ-MFA" {
		t.Errorf("SigningKey = %q, %v", owner, ok)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Validate on a built registry: %v", err)
	}

	_, err = trust.New(nil, []*trust.Participant{p, p})
	for _, want := range []string{"no trust anchor", "duplicate id", "listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(bad) error %v does not report %q", err, want)
		}
	}
}
