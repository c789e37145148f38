package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

func referral(to, consentID string, recipients []string) map[string]any {
	return gatewaytest.Message("KZ-MTSZN", to, "referral", "rehabilitation-referral", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYREF", "CANARYCHILD"),
		"record": map[string]any{"service_type": "mhpss", "priority": "high", "needs": []string{"schooling"},
			"psychosocial": map[string]any{"assessment": "CANARYASSESSMENT"}},
		"consent": map[string]any{
			"id": consentID, "basis": "consent", "given_by": "representative", "representative_relation": "grandmother",
			"child_assent": "yes", "recipients": recipients, "purposes": []string{"rehabilitation-referral"},
			"obtained_at": time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339),
			"expires_at":  time.Now().Add(180 * 24 * time.Hour).UTC().Format(time.RFC3339),
		},
	})
}

// R16: a withdrawal from the referrer stops further referrals under the
// consent, and every earlier recipient is told.
func TestConsentWithdrawal(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	referrer := env.Client("KZ-MTSZN")
	both := []string{"UN-UNICEF", "UN-IOM"}
	for _, to := range both {
		r, err := referrer.Send(ctx, referral(to, "C-WD-1", both))
		if err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("referral to %s: %v %d %s", to, err, r.Status, r.Body)
		}
	}
	// Another consent, not withdrawn, for contrast.
	if r, _ := referrer.Send(ctx, referral("UN-UNICEF", "C-WD-2", both)); r.Status != http.StatusAccepted {
		t.Fatalf("second consent: %d %s", r.Status, r.Body)
	}
	for _, id := range both {
		if ds, err := env.Client(id).Inbox(ctx, 10); err != nil || len(ds) == 0 {
			t.Fatalf("%s inbox: %v %d", id, err, len(ds))
		} else {
			for _, d := range ds {
				_ = env.Client(id).Ack(ctx, d.DeliveryID)
			}
		}
	}

	w := gatewaytest.Message("KZ-MTSZN", "UN-UNICEF", "consent.withdrawal", "rehabilitation-referral", map[string]any{
		"subject": map[string]any{"ref": "S-ANY"},
		"consent": map[string]any{"id": "C-WD-1"},
	})
	r, err := referrer.Send(ctx, w)
	if err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("withdrawal: %v %d %s", err, r.Status, r.Body)
	}
	for _, id := range both {
		ds, err := env.Client(id).Inbox(ctx, 10)
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s was not told of the withdrawal: %v %d", id, err, len(ds))
		}
		m := ds[0].Payload.Message
		if m["type"] != "consent.withdrawal" || m["consent"].(map[string]any)["id"] != "C-WD-1" {
			t.Errorf("%s got %v", id, m)
		}
	}
	if ds, _ := env.Client("KZ-MJ").Inbox(ctx, 10); len(ds) != 0 {
		t.Errorf("a participant without referrals under the consent was told")
	}

	r, _ = referrer.Send(ctx, referral("UN-UNICEF", "C-WD-1", both))
	if p := r.Problem(); r.Status != http.StatusForbidden || p.Code != "policy_denied" || !hasRule(p.Reasons, "R16") {
		t.Errorf("referral under a withdrawn consent: %d %s", r.Status, r.Body)
	}
	if r, _ := referrer.Send(ctx, referral("UN-UNICEF", "C-WD-2", both)); r.Status != http.StatusAccepted {
		t.Errorf("another consent was affected: %d %s", r.Status, r.Body)
	}
	assertNoCanary(t, env.Logs.String(), "CANARYREF", "CANARYCHILD", "CANARYASSESSMENT")
}
