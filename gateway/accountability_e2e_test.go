package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

// Who received what about this person, a retention purge with a clock we
// control (payloads and then metadata), and an audit chain that still
// verifies with every event in it.
func TestAccountability(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef, mj := env.Client("UN-UNICEF"), env.Client("KZ-MJ")
	subject := gatewaytest.ChildSubject("CANARYACCT", "CANARYABILITY")
	subject["ref"] = "S-ACCT-1"

	verify := verificationRequest("UN-UNICEF", "KZ-MJ", subject)
	if r, _ := unicef.Send(ctx, verify); r.Status != http.StatusAccepted {
		t.Fatalf("verification: %d %s", r.Status, r.Body)
	}
	ref := referral("UN-UNICEF", "C-ACCT", []string{"UN-UNICEF"})
	ref["subject"] = subject
	if r, _ := env.Client("KZ-MTSZN").Send(ctx, ref); r.Status != http.StatusAccepted {
		t.Fatalf("referral: %d %s", r.Status, r.Body)
	}
	other := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("X", "Y"))
	if r, _ := unicef.Send(ctx, other); r.Status != http.StatusAccepted {
		t.Fatalf("other subject: %d", r.Status)
	}
	// UNICEF reads its referral; KZ-MJ leaves both requests in its inbox.
	ds, err := unicef.Inbox(ctx, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("UNICEF inbox: %v %d", err, len(ds))
	}
	if err := unicef.Ack(ctx, ds[0].DeliveryID); err != nil {
		t.Fatal(err)
	}

	// The compliance officer asks about S-ACCT-1.
	r, err := env.Client("UN-UNOCT").Do(ctx, http.MethodPost, "/v1/audit/subject", "application/json", []byte(`{"ref":"S-ACCT-1"}`))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("subject report: %v %d %s", err, r.Status, r.Body)
	}
	var rep struct {
		SubjectHash string `json:"subject_hash"`
		Entries     []struct {
			Kind       string   `json:"kind"`
			From       string   `json:"from"`
			To         string   `json:"to"`
			Purpose    string   `json:"purpose"`
			MessageID  string   `json:"message_id"`
			DecisionID string   `json:"decision_id"`
			Categories []string `json:"categories"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(r.Body, &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range rep.Entries {
		if e.Kind == "accepted" {
			got[e.To] = e.Purpose
			if e.DecisionID == "" || len(e.Categories) == 0 {
				t.Errorf("entry without decision or categories: %+v", e)
			}
		}
		if e.MessageID == other["id"] {
			t.Error("another subject's message is in the report")
		}
	}
	if got["KZ-MJ"] != "identity-verification" || got["UN-UNICEF"] != "rehabilitation-referral" || len(got) != 2 {
		t.Errorf("report says %v", got)
	}
	if strings.Contains(string(r.Body), "CANARY") || strings.Contains(string(r.Body), "S-ACCT-1") {
		t.Errorf("the report shows personal data: %s", r.Body)
	}
	if r, _ := unicef.Do(ctx, http.MethodPost, "/v1/audit/subject", "application/json", []byte(`{"ref":"S-ACCT-1"}`)); r.Status != http.StatusForbidden {
		t.Errorf("a non-compliance participant read the report: %d", r.Status)
	}

	// 91 days later the verification requests' payloads are gone (90 days),
	// and so is their metadata (their exp passed long before); the
	// referral's stay (400 days).
	purged, err := env.Gateway.Purge(ctx, time.Now().Add(91*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range purged {
		ids[p.ID] = p.Payloads && p.Forgotten
	}
	if len(ids) != 2 || !ids[verify["id"].(string)] || !ids[other["id"].(string)] {
		t.Errorf("purged %+v", purged)
	}
	if ds, err := mj.Inbox(ctx, 10); err != nil || len(ds) != 0 {
		t.Errorf("purged payloads still offered: %v %d", err, len(ds))
	}
	if r, err := unicef.Do(ctx, http.MethodGet, "/v1/messages/"+verify["id"].(string), "", nil); err != nil || r.Status != http.StatusNotFound {
		t.Errorf("status of a forgotten message: %v %d %s", err, r.Status, r.Body)
	}
	if st := status(t, env.Client("KZ-MTSZN"), ref["id"].(string)); st.Status != "delivered" {
		t.Errorf("the referral's status: %+v", st)
	}
	// The report reads the audit chain, which keeps what was forgotten.
	r, err = env.Client("UN-UNOCT").Do(ctx, http.MethodPost, "/v1/audit/subject", "application/json", []byte(`{"ref":"S-ACCT-1"}`))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("subject report after the purge: %v %d %s", err, r.Status, r.Body)
	}
	var after struct {
		Entries []struct {
			Kind string `json:"kind"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(r.Body, &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Entries) != len(rep.Entries) {
		t.Errorf("subject report: %d entries before the purge, %d after", len(rep.Entries), len(after.Entries))
	}
	if again, _ := env.Gateway.Purge(ctx, time.Now().Add(91*24*time.Hour)); len(again) != 0 {
		t.Errorf("purged twice: %v", again)
	}

	// Stop (the final checkpoint is written) and verify the live chain.
	env.Stop()
	b, err := gateway.OpenStore(ctx, env.Config, gateway.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keys, _, err := env.Client("UN-UNICEF").GatewayKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyLive(ctx, b, audit.KeyFunc(keys...))
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	kinds := map[string]int{}
	replicas, _ := b.Replicas(ctx)
	for _, rp := range replicas {
		_ = b.Entries(ctx, rp, 0, func(e audit.Entry) error {
			kinds[e.Kind]++
			return nil
		})
	}
	if kinds["accepted"] != 3 || kinds["delivered"] != 1 || kinds["purged"] != 2 || kinds["forgotten"] != 2 {
		t.Errorf("audit kinds %v", kinds)
	}
	t.Logf("audit: %+v, kinds %v", sum, kinds)
	assertNoCanary(t, env.Logs.String(), "CANARYACCT", "CANARYABILITY")
}

// The audit log now lives in the embedded store's file. A gateway that finds
// the separate audit.db of an earlier version beside it refuses to start
// rather than begin a second chain and leave the first unnoticed.
func TestLegacyAuditFileRefused(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	env.Stop()
	_, path := env.Config.StoreKind()
	legacy := filepath.Join(filepath.Dir(path), "audit.db")
	if err := os.WriteFile(legacy, []byte("old chain"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), env.Config, nil)
	if err == nil {
		g.Close()
		t.Fatal("gateway started beside a legacy audit.db")
	}
	if !strings.Contains(err.Error(), legacy) {
		t.Fatalf("error does not name the legacy file: %v", err)
	}
	if err := os.Remove(legacy); err != nil {
		t.Fatal(err)
	}
	g, err = gateway.New(context.Background(), env.Config, nil)
	if err != nil {
		t.Fatalf("without the legacy file: %v", err)
	}
	g.Close()
}
