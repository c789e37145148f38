package trust_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/trust"
)

func TestIdentify(t *testing.T) {
	dir := newPKI(t, "KZ-MVD", "UN-UNICEF")
	devCA := loadCA(t, dir)
	foreign := newRootCA(t, "Foreign CA")
	// A second anchor, as a national PKI would be: root and issuing CA.
	national := newRootCA(t, "National root CA")
	inter := national.intermediate(t, "Ministry issuing CA")
	writePEM(t, filepath.Join(dir, "national.crt"), national.cert)
	f := readRegistryFile(t, filepath.Join(dir, pki.RegistryFile))
	f.TrustAnchors = append(f.TrustAnchors, "national.crt")
	path := filepath.Join(dir, "two-anchors.yaml")
	writeRegistryFile(t, path, f)
	r := mustLoad(t, path)

	leaf := func(c ca, o leafOpts) []*x509.Certificate {
		cert, _ := c.leaf(t, o)
		return []*x509.Certificate{cert}
	}
	const mvdURI = trust.URIPrefix + "KZ-MVD"

	tests := []struct {
		name    string
		peers   []*x509.Certificate
		state   *tls.ConnectionState // overrides peers
		want    string
		wantErr error
	}{
		{name: "generated certificate (CN and SAN URI)",
			peers: []*x509.Certificate{readCert(t, filepath.Join(dir, "KZ-MVD", pki.TLSCert))}, want: "KZ-MVD"},
		{name: "CN only", peers: leaf(devCA, leafOpts{cn: "UN-UNICEF"}), want: "UN-UNICEF"},
		{name: "SAN URI only, descriptive CN",
			peers: leaf(devCA, leafOpts{cn: "Border service gateway client", uris: []string{mvdURI}}), want: "KZ-MVD"},
		{name: "SAN URI only, no CN", peers: leaf(devCA, leafOpts{uris: []string{mvdURI}}), want: "KZ-MVD"},
		{name: "SAN URI with upper-case scheme and NID",
			peers: leaf(devCA, leafOpts{uris: []string{"URN:XBORDER:PARTICIPANT:KZ-MVD"}}), want: "KZ-MVD"},
		{name: "other SAN URIs are ignored",
			peers: leaf(devCA, leafOpts{cn: "KZ-MVD", uris: []string{"https://mvd.example/", "urn:other:thing"}}), want: "KZ-MVD"},
		{name: "through an intermediate sent by the client",
			peers: func() []*x509.Certificate {
				c, _ := inter.leaf(t, leafOpts{uris: []string{mvdURI}})
				return []*x509.Certificate{c, inter.cert}
			}(), want: "KZ-MVD"},
		{name: "CN and SAN URI disagree",
			peers: leaf(devCA, leafOpts{cn: "KZ-MVD", uris: []string{trust.URIPrefix + "UN-UNICEF"}}), wantErr: trust.ErrIdentityMismatch},
		{name: "two SAN URIs disagree",
			peers:   leaf(devCA, leafOpts{uris: []string{mvdURI, trust.URIPrefix + "UN-UNICEF"}}),
			wantErr: trust.ErrIdentityMismatch},
		{name: "malformed participant SAN URI",
			peers: leaf(devCA, leafOpts{cn: "KZ-MVD", uris: []string{trust.URIPrefix + "kz-mvd"}}), wantErr: trust.ErrNoIdentity},
		{name: "no participant named", peers: leaf(devCA, leafOpts{cn: "Jane Doe"}), wantErr: trust.ErrNoIdentity},
		{name: "unregistered id", peers: leaf(devCA, leafOpts{cn: "KZ-MFA"}), wantErr: trust.ErrUnknownIdentity},
		{name: "foreign CA", peers: leaf(foreign, leafOpts{cn: "KZ-MVD", uris: []string{mvdURI}}), wantErr: trust.ErrUntrusted},
		{name: "intermediate not sent",
			peers: func() []*x509.Certificate {
				c, _ := inter.leaf(t, leafOpts{cn: "KZ-MVD"})
				return []*x509.Certificate{c}
			}(), wantErr: trust.ErrUntrusted},
		{name: "server-auth certificate",
			peers:   leaf(devCA, leafOpts{cn: "KZ-MVD", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}),
			wantErr: trust.ErrUntrusted},
		{name: "expired certificate",
			peers: leaf(devCA, leafOpts{cn: "KZ-MVD",
				notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-24 * time.Hour)}),
			wantErr: trust.ErrUntrusted},
		{name: "a CA certificate", peers: []*x509.Certificate{inter.cert, national.cert}, wantErr: trust.ErrUntrusted},
		{name: "no certificate", state: &tls.ConnectionState{}, wantErr: trust.ErrNoClientCert},
		{name: "no connection state", wantErr: trust.ErrNoClientCert},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := tc.state
			if state == nil && tc.peers != nil {
				state = &tls.ConnectionState{PeerCertificates: tc.peers}
			}
			for round := range 2 { // the second from the cache of verified chains
				got, err := r.Identify(state)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("Identify = %q, %v; want error %v", got, err, tc.wantErr)
					}
					if got != "" {
						t.Errorf("Identify returned id %q with an error", got)
					}
					if strings.Contains(err.Error(), "Jane Doe") {
						t.Errorf("error leaks certificate content: %v", err)
					}
					continue
				}
				if err != nil || got != tc.want {
					t.Fatalf("round %d: Identify = %q, %v; want %q", round, got, err, tc.want)
				}
			}
		})
	}
}

// A chain verified (and remembered) by one registry is judged afresh by the
// next: pinning another certificate, or removing the participant, applies
// to the very next request.
func TestIdentifyAfterReload(t *testing.T) {
	dir := newPKI(t, "KZ-MVD", "UN-UNICEF")
	state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{readCert(t, filepath.Join(dir, "KZ-MVD", pki.TLSCert))}}
	h := trust.NewHolder(mustLoad(t, filepath.Join(dir, pki.RegistryFile)))
	for range 3 {
		if got, err := h.Identify(state); err != nil || got != "KZ-MVD" {
			t.Fatalf("Identify = %q, %v", got, err)
		}
	}

	f := readRegistryFile(t, filepath.Join(dir, pki.RegistryFile))
	other, _ := loadCA(t, dir).leaf(t, leafOpts{cn: "KZ-MVD"})
	writePEM(t, filepath.Join(dir, "other-mvd.crt"), other)
	f.Participants[0].TLSCert = "other-mvd.crt" // KZ-MVD now pinned to another certificate
	pinned := filepath.Join(dir, "pinned.yaml")
	writeRegistryFile(t, pinned, f)
	if err := h.Reload(pinned); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Identify(state); !errors.Is(err, trust.ErrPinMismatch) {
		t.Fatalf("after pinning another certificate: Identify = %q, %v; want ErrPinMismatch", got, err)
	}

	f.Participants = f.Participants[1:] // KZ-MVD removed
	removed := filepath.Join(dir, "removed.yaml")
	writeRegistryFile(t, removed, f)
	if err := h.Reload(removed); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Identify(state); !errors.Is(err, trust.ErrUnknownIdentity) {
		t.Fatalf("after removal: Identify = %q, %v; want ErrUnknownIdentity", got, err)
	}
}

func TestIdentifyPinning(t *testing.T) {
	dir := newPKI(t, "KZ-MVD", "UN-UNICEF", "UZ-MFA")
	devCA := loadCA(t, dir)
	root := newRootCA(t, "UN root CA")
	inter := root.intermediate(t, "UNICEF issuing CA")
	writePEM(t, filepath.Join(dir, "un-root.crt"), root.cert)
	writePEM(t, filepath.Join(dir, "unicef-ca.crt"), inter.cert)

	f := readRegistryFile(t, filepath.Join(dir, pki.RegistryFile))
	f.TrustAnchors = append(f.TrustAnchors, "un-root.crt")
	f.Participants[0].TLSCert = "KZ-MVD/tls.crt" // KZ-MVD: this certificate only
	f.Participants[1].TLSCA = "unicef-ca.crt"    // UN-UNICEF: issued by its CA only
	f.Participants[2].Suspended = true           // UZ-MFA: suspended, still identified
	path := filepath.Join(dir, "pinned.yaml")
	writeRegistryFile(t, path, f)
	r := mustLoad(t, path)

	otherMVD, _ := devCA.leaf(t, leafOpts{cn: "KZ-MVD"})
	unicefViaInter, _ := inter.leaf(t, leafOpts{cn: "UN-UNICEF"})
	unicefDirect, _ := root.leaf(t, leafOpts{cn: "UN-UNICEF"})
	unicefDev, _ := devCA.leaf(t, leafOpts{cn: "UN-UNICEF"})
	uzbek, _ := devCA.leaf(t, leafOpts{cn: "UZ-MFA"})

	tests := []struct {
		name    string
		peers   []*x509.Certificate
		want    string
		wantErr error
	}{
		{name: "pinned certificate", peers: []*x509.Certificate{readCert(t, filepath.Join(dir, "KZ-MVD", pki.TLSCert))}, want: "KZ-MVD"},
		{name: "another certificate from the same CA", peers: []*x509.Certificate{otherMVD}, wantErr: trust.ErrPinMismatch},
		{name: "issued by the pinned CA", peers: []*x509.Certificate{unicefViaInter, inter.cert}, want: "UN-UNICEF"},
		{name: "issued by the pinned CA's root", peers: []*x509.Certificate{unicefDirect}, wantErr: trust.ErrPinMismatch},
		{name: "issued by another anchor", peers: []*x509.Certificate{unicefDev}, wantErr: trust.ErrPinMismatch},
		{name: "suspended participant", peers: []*x509.Certificate{uzbek}, want: "UZ-MFA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Identify(&tls.ConnectionState{PeerCertificates: tc.peers})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Identify = %q, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Identify = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestTLSHandshake(t *testing.T) {
	dir := newPKI(t, "KZ-MVD")
	r := mustLoad(t, filepath.Join(dir, pki.RegistryFile))
	server := r.TLSConfig(loadPair(t, dir, pki.GatewayDir))

	mvd := loadPair(t, dir, "KZ-MVD")
	foreign := newRootCA(t, "Foreign CA")
	fc, fk := foreign.leaf(t, leafOpts{cn: "KZ-MVD", uris: []string{trust.URIPrefix + "KZ-MVD"}})
	foreignPair := tlsCert(fk, fc)

	tests := []struct {
		name   string
		client *tls.Config
		want   string // identity; empty: the handshake must fail
	}{
		{name: "participant certificate", client: clientConfig(t, dir, &mvd), want: "KZ-MVD"},
		{name: "no client certificate", client: clientConfig(t, dir, nil)},
		{name: "certificate from a foreign CA", client: clientConfig(t, dir, &foreignPair)},
		{name: "TLS 1.2 only", client: func() *tls.Config {
			c := clientConfig(t, dir, &mvd)
			c.MaxVersion = tls.VersionTLS12
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state, serverErr, clientErr := handshake(t, server, tc.client)
			if tc.want == "" {
				if serverErr == nil {
					t.Fatal("server accepted the handshake")
				}
				if clientErr == nil {
					t.Error("client saw no error")
				}
				return
			}
			if serverErr != nil || clientErr != nil {
				t.Fatalf("handshake failed: server %v, client %v", serverErr, clientErr)
			}
			if state.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", state.Version)
			}
			got, err := r.Identify(&state)
			if err != nil || got != tc.want {
				t.Fatalf("Identify = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestHolderReload: a reload swaps the anchors used by new handshakes; a bad
// registry is refused and the last good one keeps serving.
func TestHolderReload(t *testing.T) {
	dirA := newPKI(t, "KZ-MVD")
	dirB := newPKI(t, "UN-UNICEF")
	h := trust.NewHolder(mustLoad(t, filepath.Join(dirA, pki.RegistryFile)))
	server := h.TLSConfig(loadPair(t, dirA, pki.GatewayDir))

	unicef := loadPair(t, dirB, "UN-UNICEF")
	client := clientConfig(t, dirA, &unicef) // trusts A's gateway, presents B's cert

	if _, serverErr, _ := handshake(t, server, client); serverErr == nil {
		t.Fatal("registry A accepted a certificate of CA B")
	}

	if err := h.Reload(filepath.Join(dirB, "missing.yaml")); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if _, ok := h.Load().Participant("KZ-MVD"); !ok {
		t.Fatal("failed reload replaced the registry")
	}

	if err := h.Reload(filepath.Join(dirB, pki.RegistryFile)); err != nil {
		t.Fatal(err)
	}
	state, serverErr, clientErr := handshake(t, server, client)
	if serverErr != nil || clientErr != nil {
		t.Fatalf("after reload: server %v, client %v", serverErr, clientErr)
	}
	if got, err := h.Identify(&state); err != nil || got != "UN-UNICEF" {
		t.Fatalf("Identify = %q, %v", got, err)
	}

	var empty trust.Holder
	if _, err := empty.Identify(&state); err == nil {
		t.Error("empty holder identified a client")
	}
}
