package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/trust"
)

// The attacks of issue 10, tried through the real server from PROTOCOL.md
// alone: each one is refused, or its content never reaches the recipient.

// referralTo builds a consented rehabilitation referral from KZ-MTSZN.
func referralTo(to string, subject map[string]any, record, consent map[string]any) map[string]any {
	if consent == nil {
		consent = map[string]any{
			"id": "C-" + fmt.Sprint(time.Now().UnixNano()), "basis": "consent", "given_by": "representative",
			"representative_relation": "mother", "child_assent": "yes", "recipients": []string{to},
			"purposes":    []string{"rehabilitation-referral"},
			"obtained_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
			"expires_at":  time.Now().AddDate(0, 6, 0).UTC().Format(time.RFC3339),
		}
	}
	return gatewaytest.Message("KZ-MTSZN", to, "referral", "rehabilitation-referral", map[string]any{
		"subject": subject, "record": record, "consent": consent,
	})
}

// A member name with a dot (or any name outside ^[A-Za-z0-9_-]{1,64}$) is
// refused before anything else sees the message, at any depth.
func TestAmbiguousMemberNamesRefused(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	mtszn := env.Client("KZ-MTSZN")
	cases := map[string]func(m map[string]any){
		"record psychosocial.assessment": func(m map[string]any) {
			m["record"].(map[string]any)["psychosocial.assessment"] = "CANARYPSY"
		},
		"subject biometrics.template_ref": func(m map[string]any) {
			m["subject"].(map[string]any)["biometrics.template_ref"] = "CANARYTPL"
		},
		"subject names.primary beside names": func(m map[string]any) {
			m["subject"].(map[string]any)["names.primary"] = "CANARYNAME"
		},
		"consent override.reason": func(m map[string]any) {
			m["consent"].(map[string]any)["override.reason"] = "CANARYREASON"
		},
		"deep in an array": func(m map[string]any) {
			m["subject"].(map[string]any)["documents"] = []any{map[string]any{"x": []any{map[string]any{"a.b": "CANARYDOC"}}}}
		},
		"lookalike letter": func(m map[string]any) {
			m["record"].(map[string]any)["psychosoci\u0430l"] = "CANARYPSY"
		},
		"space": func(m map[string]any) { m["record"].(map[string]any)["gbv "] = "CANARYGBV" },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			m := referralTo("UN-IOM", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"),
				map[string]any{"service_type": "mhpss"}, nil)
			edit(m)
			r, err := mtszn.Send(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if p := r.Problem(); r.Status != http.StatusUnprocessableEntity || p.Code != "invalid_message" {
				t.Fatalf("got %d %s, want 422 invalid_message", r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), "CANARY") || strings.Contains(string(r.Body), "assessment") ||
				strings.Contains(string(r.Body), "template_ref") {
				t.Errorf("the refusal echoes the sender's names: %s", r.Body)
			}
		})
	}
	if ds, err := env.Client("UN-IOM").Inbox(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("IOM received %d deliveries (%v)", len(ds), err)
	}
	assertNoCanary(t, env.Logs.String(), "CANARY", "assessment", "template_ref")
}

// consent is minimised (DOMAIN R10): its §5 members pass, nothing else,
// and what was removed is listed in redacted, exactly.
func TestConsentMinimised(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	mtszn, unicef := env.Client("KZ-MTSZN"), env.Client("UN-UNICEF")
	m := referralTo("UN-UNICEF", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"),
		map[string]any{"service_type": "mhpss", "psychosocial": map[string]any{"assessment": "ok"}}, nil)
	consent := m["consent"].(map[string]any)
	consent["subject"] = map[string]any{"names": "CANARYCONSENTNAME"}
	consent["Psychosocial"] = "CANARYCASE"
	consent["psychosocial"] = map[string]any{"assessment": "CANARYL4"}
	m["subject"].(map[string]any)["names"].(map[string]any)["nickname"] = "CANARYNICK"
	r, err := mtszn.Send(ctx, m)
	if err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("send: %v %d %s", err, r.Status, r.Body)
	}
	ans := decodeAnswer(t, r.Body)
	for _, p := range []string{"consent.subject", "consent.Psychosocial", "consent.psychosocial", "subject.names.nickname"} {
		if !contains(ans.Redacted, p) {
			t.Errorf("redacted %v lacks %s", ans.Redacted, p)
		}
	}
	ds, err := unicef.Inbox(ctx, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("inbox: %v %d", err, len(ds))
	}
	b, _ := json.Marshal(ds[0].Payload.Message)
	for _, c := range []string{"CANARYCONSENTNAME", "CANARYCASE", "CANARYL4", "CANARYNICK"} {
		if strings.Contains(string(b), c) {
			t.Errorf("%s reached the recipient: %s", c, b)
		}
	}
	got := ds[0].Payload.Message["consent"].(map[string]any)
	for k := range consent {
		switch k {
		case "subject", "Psychosocial", "psychosocial":
		default:
			if _, ok := got[k]; !ok {
				t.Errorf("consent.%s (a DOMAIN §5 member) was removed", k)
			}
		}
	}
	if fmt.Sprint(ds[0].Payload.Provenance.Redacted) != fmt.Sprint(ans.Redacted) {
		t.Errorf("provenance redacted %v, answer %v", ds[0].Payload.Provenance.Redacted, ans.Redacted)
	}
	assertNoCanary(t, env.Logs.String(), "CANARY")
}

// A withdrawal delivers subject.ref and consent.id, nothing else
// (PROTOCOL §5.1).
func TestWithdrawalCarriesReferencesOnly(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	mtszn := env.Client("KZ-MTSZN")
	m := referralTo("UN-UNICEF", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"), map[string]any{"service_type": "mhpss"}, nil)
	if r, err := mtszn.Send(ctx, m); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("referral: %v %d %s", err, r.Status, r.Body)
	}
	if _, err := env.Client("UN-UNICEF").Inbox(ctx, 10); err != nil {
		t.Fatal(err)
	}
	consent := m["consent"].(map[string]any)
	w := gatewaytest.Message("KZ-MTSZN", "UN-UNICEF", "consent.withdrawal", "rehabilitation-referral", map[string]any{
		"subject": m["subject"],
		"consent": map[string]any{"id": consent["id"], "representative_relation": "CANARYRELATION", "given_by": "representative"},
	})
	r, err := mtszn.Send(ctx, w)
	if err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("withdrawal: %v %d %s", err, r.Status, r.Body)
	}
	ds, err := env.Client("UN-UNICEF").Inbox(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, d := range ds {
		if d.MessageID != w["id"] {
			continue
		}
		found = true
		got := d.Payload.Message
		if s, _ := json.Marshal(got["subject"]); string(s) != fmt.Sprintf(`{"ref":%q}`, m["subject"].(map[string]any)["ref"]) {
			t.Errorf("subject delivered as %s", s)
		}
		if c, _ := json.Marshal(got["consent"]); string(c) != fmt.Sprintf(`{"id":%q}`, consent["id"]) {
			t.Errorf("consent delivered as %s", c)
		}
	}
	if !found {
		t.Fatal("the withdrawal was not delivered")
	}
}

// A birth date that is no date, or an estimate that is no non-negative
// number, is denied (R1), with a reason that names the field, not the value.
func TestDatesAreDates(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	mtszn := env.Client("KZ-MTSZN")
	for _, bad := range []any{"unknown", "2010-13-01", "2010-02-30", "2010-2-3", "2010-02-03T00:00:00Z", "", 2010, nil} {
		s := gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND")
		s["birth_date"] = bad
		s["age_estimate"] = 30 // must not rescue a bad date
		r, err := mtszn.Send(ctx, referralTo("UN-UNICEF", s, map[string]any{"service_type": "mhpss"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		p := r.Problem()
		if r.Status != http.StatusForbidden || p.Code != "policy_denied" || !hasRule(p.Reasons, "R1") ||
			!strings.Contains(string(r.Body), "subject.birth_date") {
			t.Errorf("birth_date %#v: %d %s", bad, r.Status, r.Body)
		}
	}
	for _, bad := range []any{-1, "9", nil, map[string]any{}} {
		s := gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND")
		delete(s, "birth_date")
		s["age_estimate"] = bad
		r, err := mtszn.Send(ctx, referralTo("UN-UNICEF", s, map[string]any{"service_type": "mhpss"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if p := r.Problem(); r.Status != http.StatusForbidden || !hasRule(p.Reasons, "R1") || !strings.Contains(string(r.Body), "subject.age_estimate") {
			t.Errorf("age_estimate %#v: %d %s", bad, r.Status, r.Body)
		}
	}
}

// Small protocol points of revision 2: fractional NumericDates, to = from,
// a strict compact form (a CR/LF copy of an accepted message is no retry),
// and a consent id the store cannot key is the sender's error, not 503.
func TestProtocolRevision2Points(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	subject := gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND")

	t.Run("fractional iat and exp", func(t *testing.T) {
		m := verificationRequest("UN-UNICEF", "KZ-MJ", subject)
		now := float64(time.Now().UnixNano()) / 1e9
		m["iat"], m["exp"] = json.Number(fmt.Sprintf("%.3f", now)), json.Number(fmt.Sprintf("%.3f", now+299.5))
		if r, err := unicef.Send(ctx, m); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("%v %d %s", err, r.Status, r.Body)
		}
	})
	t.Run("to equals from", func(t *testing.T) {
		r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "UN-UNICEF", subject))
		if err != nil {
			t.Fatal(err)
		}
		if p := r.Problem(); r.Status != http.StatusUnprocessableEntity || p.Code != "invalid_message" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("CRLF after an accepted envelope", func(t *testing.T) {
		sealed, err := unicef.Seal(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", subject))
		if err != nil {
			t.Fatal(err)
		}
		if r, err := unicef.Post(ctx, sealed); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("%v %d %s", err, r.Status, r.Body)
		}
		for _, variant := range [][]byte{append(append([]byte{}, sealed...), '\r', '\n'), []byte(strings.Replace(string(sealed), ".", ".\n", 1))} {
			r, err := unicef.Post(ctx, variant)
			if err != nil {
				t.Fatal(err)
			}
			if p := r.Problem(); r.Status != http.StatusBadRequest || p.Code != "malformed_envelope" {
				t.Errorf("variant: %d %s", r.Status, r.Body)
			}
		}
		if r, _ := unicef.Post(ctx, sealed); r.Status != http.StatusOK {
			t.Errorf("the exact retry: %d %s", r.Status, r.Body)
		}
	})
	t.Run("consent id with NUL", func(t *testing.T) {
		m := referralTo("UN-UNICEF", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"), map[string]any{"service_type": "mhpss"}, nil)
		m["consent"].(map[string]any)["id"] = "C-\x00-1"
		before := strings.Count(env.Logs.String(), `"level":"ERROR"`)
		r, err := env.Client("KZ-MTSZN").Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if p := r.Problem(); r.Status != http.StatusUnprocessableEntity || p.Code != "invalid_message" {
			t.Errorf("%d %s", r.Status, r.Body)
		}
		if after := strings.Count(env.Logs.String(), `"level":"ERROR"`); after != before {
			t.Errorf("a sender's bad input logged %d ERROR lines", after-before)
		}
	})
	t.Run("names of the sender's choosing are never echoed", func(t *testing.T) {
		m := verificationRequest("UN-UNICEF", "KZ-MJ", subject)
		m["CANARYTOPLEVEL"] = 1
		r, _ := unicef.Send(ctx, m)
		if r.Status != http.StatusUnprocessableEntity || strings.Contains(string(r.Body), "CANARY") {
			t.Errorf("%d %s", r.Status, r.Body)
		}
		// A denied message whose subject has members of the sender's
		// choosing: reasons name no such member.
		s := gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND")
		s["CANARYKEY"] = "x"
		d := gatewaytest.Message("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", map[string]any{
			"subject": s, "record": map[string]any{"requested_assertions": []string{"identity_match"}, "CANARYRECORDKEY": 1},
		})
		r, _ = env.Client("KZ-MVD").Send(ctx, d)
		if r.Status != http.StatusForbidden || strings.Contains(string(r.Body), "CANARY") {
			t.Errorf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("free text never reaches the decision log", func(t *testing.T) {
		m := referralTo("UN-UNICEF", gatewaytest.ChildSubject("CANARYNAME", "CANARYSECOND"),
			map[string]any{"service_type": "CANARYSERVICE", "priority": "CANARYPRIORITY", "notes": "CANARYNOTES"}, nil)
		m["legal_basis"] = "CANARYLAW"
		m["consent"].(map[string]any)["representative_relation"] = "CANARYRELATION"
		if r, err := env.Client("KZ-MTSZN").Send(ctx, m); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("%v %d %s", err, r.Status, r.Body)
		}
	})
	assertNoCanary(t, env.Logs.String(), "CANARY", subject["birth_date"].(string))
}

// The registry refuses, at load and at reload, a delivery the adapter would
// refuse at the first delivery.
func TestRegistryRefusesWhatAdaptersWould(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	reg := filepath.Join(env.PKI, "registry.yaml")
	orig, err := os.ReadFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []trust.Delivery{
		{Adapter: "https", URL: "https://10.0.0.7/in"},
		{Adapter: "https", URL: "https://[::1]:8443/in"},
		{Adapter: "https", URL: "https://iom.example/in#x"},
		{Adapter: "file", Dir: "registry.yaml"},
	} {
		f, err := trust.DecodeFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		for i := range f.Participants {
			if f.Participants[i].ID == "UN-IOM" {
				f.Participants[i].Delivery = target
			}
		}
		bad, err := yaml.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(reg, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := env.Gateway.Registry.Reload(reg); err == nil {
			t.Errorf("reload accepted %+v", target)
		}
		cfg := env.Config
		cfg.Listen, cfg.OpsListen = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Store = "bolt:" + filepath.Join(t.TempDir(), "x.db")
		if g, err := gateway.New(ctx, cfg, nil); err == nil {
			g.Close()
			t.Errorf("a gateway started with %+v", target)
		}
	}
	if err := os.WriteFile(reg, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := env.Gateway.Registry.Reload(reg); err != nil {
		t.Fatalf("the original registry: %v", err)
	}
}
