package gateway_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
)

// The gateway's keys rotate with an overlap: old receipts still verify,
// messages sealed to the old encryption key are still opened until it is
// retired.
func TestGatewayKeyRotation(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("before rotation: %v %d", err, r.Status)
	}
	oldReceipt := decodeAnswer(t, r.Body).Receipt
	_, oldEnc, _ := unicef.GatewayKeys(ctx)
	sealOld := func() []byte {
		b, _ := json.Marshal(verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
		jwe, err := envelope.Seal(b, unicef.Me.Signing, envelope.TypMessage, oldEnc)
		if err != nil {
			t.Fatal(err)
		}
		return jwe
	}
	env.Stop()

	gwDir := filepath.Join(env.PKI, "gateway")
	oldSign, oldEncKID, err := pki.RotateGateway(gwDir)
	if err != nil {
		t.Fatal(err)
	}
	env2 := gatewaytest.StartWith(t, env.PKI, env.Config)
	c2 := env2.Client("UN-UNICEF")
	keys, newEnc, err := c2.GatewayKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 || newEnc.KID() == oldEncKID {
		t.Fatalf("JWKS after rotation has %d keys (want 4), current enc %s (old %s)", len(keys), newEnc.KID(), oldEncKID)
	}
	if rc, err := c2.VerifyReceipt(ctx, oldReceipt); err != nil || rc.ID == "" {
		t.Errorf("a receipt from before the rotation no longer verifies: %v", err)
	}
	if r, _ := c2.Post(ctx, sealOld()); r.Status != http.StatusAccepted {
		t.Errorf("message sealed to the previous key during the overlap: %d %s", r.Status, r.Body)
	}
	r, _ = c2.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if r.Status != http.StatusAccepted {
		t.Fatalf("after rotation: %d %s", r.Status, r.Body)
	}
	parts := strings.Split(decodeAnswer(t, r.Body).Receipt, ".")
	if hdr := decodeSegment(t, parts[0]); hdr["kid"] == oldSign {
		t.Error("new receipts are still signed with the previous key")
	}
	env2.Stop()

	if err := pki.RetireEncryption(gwDir, oldEncKID); err != nil {
		t.Fatal(err)
	}
	env3 := gatewaytest.StartWith(t, env.PKI, env.Config)
	if r, _ := env3.Client("UN-UNICEF").Post(ctx, sealOld()); r.Status != http.StatusBadRequest || r.Problem().Code != "decryption_failed" {
		t.Errorf("retired key still opened: %d %s", r.Status, r.Body)
	}
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64URL(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A participant rotates its signing key through the registry, under a
// running gateway: both keys work during the overlap, then only the new one.
func TestParticipantKeyRotation(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) { c.PolicyWatch = 100 * time.Millisecond })
	unicef := env.Client("UN-UNICEF")
	newKey, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := newKey.Public().MarshalJSON()
	if err := os.WriteFile(filepath.Join(env.PKI, "UN-UNICEF", "sign2.pub.jwk"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	regPath := filepath.Join(env.PKI, "registry.yaml")
	orig, _ := os.ReadFile(regPath)
	editRegistry := func(from, to string) {
		t.Helper()
		cur, _ := os.ReadFile(regPath)
		next := strings.Replace(string(cur), from, to, 1)
		if next == string(cur) {
			t.Fatalf("registry has no %q", from)
		}
		if err := os.WriteFile(regPath, []byte(next), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	withKey := func(k *envelope.PrivateKey) *client.Client {
		me := *unicef.Me
		me.Signing = k
		return client.New(env.URL(), &me)
	}
	sendWith := func(c *client.Client) *client.Response {
		r, err := c.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := sendWith(withKey(newKey)); r.Status != http.StatusUnauthorized {
		t.Fatalf("an unregistered key was accepted: %d", r.Status)
	}
	editRegistry("signing_keys: [UN-UNICEF/sign.pub.jwk]", "signing_keys: [UN-UNICEF/sign.pub.jwk, UN-UNICEF/sign2.pub.jwk]")
	waitStatus(t, func() int { return sendWith(withKey(newKey)).Status }, http.StatusAccepted)
	if r := sendWith(unicef); r.Status != http.StatusAccepted {
		t.Errorf("old key refused during the overlap: %d", r.Status)
	}
	editRegistry("signing_keys: [UN-UNICEF/sign.pub.jwk, UN-UNICEF/sign2.pub.jwk]", "signing_keys: [UN-UNICEF/sign2.pub.jwk]")
	waitStatus(t, func() int { return sendWith(unicef).Status }, http.StatusUnauthorized)
	if r := sendWith(withKey(newKey)); r.Status != http.StatusAccepted {
		t.Errorf("new key refused after the overlap: %d", r.Status)
	}
	// A broken registry edit is refused; the registry in force keeps serving.
	if err := os.WriteFile(regPath, []byte("participants: [ {id: broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Wait for the watcher to have seen it and refused it (not for a time).
	env.WaitLog(15*time.Second, "registry change refused")
	if r := sendWith(withKey(newKey)); r.Status != http.StatusAccepted {
		t.Errorf("a broken registry edit took effect: %d", r.Status)
	}
	_ = os.WriteFile(regPath, orig, 0o644)

	// Each reload and the refusal are on the audit chain.
	env.Stop()
	b, err := gateway.OpenStore(ctx, env.Config, gateway.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := chainKinds(t, b, ""); got[audit.KindRegistryReloaded] < 2 || got[audit.KindRegistryRefused] < 1 {
		t.Errorf("registry events on the chain: %v", got)
	}
}

func waitStatus(t *testing.T, try func() int, want int) {
	t.Helper()
	// A reload rebuilds the trust and the policy engine; on a loaded
	// machine that can take long. The deadline only bounds a failure.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := try()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d, want %d", got, want)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// Suspending a participant in the registry of a running gateway stops it
// sending and receiving at once; its queued deliveries wait.
func TestSuspension(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *config.Config) { c.PolicyWatch = 100 * time.Millisecond })
	unicef, mj := env.Client("UN-UNICEF"), env.Client("KZ-MJ")
	if r, _ := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); r.Status != http.StatusAccepted {
		t.Fatalf("send: %d", r.Status)
	}
	if _, _, err := mj.GatewayKeys(ctx); err != nil {
		t.Fatal(err)
	}
	probe := func() int { // a call that changes nothing
		r, err := mj.Do(ctx, http.MethodGet, "/v1/jwks", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	regPath := filepath.Join(env.PKI, "registry.yaml")
	orig, _ := os.ReadFile(regPath)
	suspended := strings.Replace(string(orig), "  - id: KZ-MJ\n", "  - id: KZ-MJ\n    suspended: true\n", 1)
	if suspended == string(orig) {
		t.Fatal("registry layout changed: cannot suspend KZ-MJ")
	}
	if err := os.WriteFile(regPath, []byte(suspended), 0o644); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, probe, http.StatusForbidden)
	if r, _ := mj.Do(ctx, http.MethodGet, "/v1/inbox", "", nil); r.Status != http.StatusForbidden {
		t.Errorf("a suspended participant's inbox was served: %d", r.Status)
	}
	r, _ := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if p := r.Problem(); r.Status != http.StatusForbidden || p.Code != "unknown_participant" {
		t.Errorf("send to a suspended recipient: %d %s", r.Status, r.Body)
	}
	if r, err := mj.Send(ctx, verificationRequest("KZ-MJ", "UN-UNICEF", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusForbidden {
		t.Errorf("a suspended sender was heard: %v %v", err, r)
	}
	// Lifted: the delivery that waited is there.
	if err := os.WriteFile(regPath, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, probe, http.StatusOK)
	if ds, err := mj.Inbox(ctx, 10); err != nil || len(ds) != 1 {
		t.Errorf("after the suspension: %v %d", err, len(ds))
	}
}
