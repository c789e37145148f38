package envelope_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/envelope"
)

func TestJWKSRoundTrip(t *testing.T) {
	f := keys(t)
	in := []*envelope.PublicKey{f.gwSig.Public(), f.gwEnc.Public(), f.gwEncRSA.Public(), f.senderEd.Public()}
	data, err := envelope.MarshalJWKS(in...)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != len(in) {
		t.Fatalf("%d keys in %s", len(raw.Keys), data)
	}
	for i, k := range raw.Keys {
		if k["kid"] != in[i].KID() || k["use"] != in[i].Use() {
			t.Errorf("key %d: kid %v use %v", i, k["kid"], k["use"])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d has private member %s", i, private)
			}
		}
	}
	out, err := envelope.ParseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("parsed %d keys", len(out))
	}
	for i := range in {
		if out[i].KID() != in[i].KID() || out[i].Use() != in[i].Use() {
			t.Errorf("key %d: kid %s use %s", i, out[i].KID(), out[i].Use())
		}
	}
	// A parsed key encrypts to the original.
	jwe, err := envelope.Encrypt([]byte("a.b.c"), out[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Decrypt(jwe, []*envelope.PrivateKey{f.gwEnc}, envelope.Profile{}); err != nil {
		t.Errorf("Decrypt with the original key: %v", err)
	}
}

func TestJWKSErrors(t *testing.T) {
	f := keys(t)
	priv := mustJSON(t, f.gwEnc)
	noUse, err := envelope.ParsePublicJWK([]byte(strings.Replace(string(mustJSON(t, f.gwEnc.Public())), `"use":"enc",`, "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("marshal key without use", func(t *testing.T) {
		if noUse.Use() != "" {
			t.Fatalf("use %q", noUse.Use())
		}
		if _, err := envelope.MarshalJWKS(f.gwSig.Public(), noUse); err == nil {
			t.Fatal("accepted")
		}
	})
	t.Run("marshal nil key", func(t *testing.T) {
		if _, err := envelope.MarshalJWKS(nil); err == nil {
			t.Fatal("accepted")
		}
	})
	for _, tc := range []struct{ name, in string }{
		{"not json", `{"keys":`},
		{"empty set", `{"keys":[]}`},
		{"no keys member", `{}`},
		{"private key", `{"keys":[` + string(priv) + `]}`},
		{"symmetric key", `{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"}]}`},
		{"unknown kty", `{"keys":[{"kty":"XYZ"}]}`},
	} {
		t.Run("parse "+tc.name, func(t *testing.T) {
			if _, err := envelope.ParseJWKS([]byte(tc.in)); err == nil || !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
