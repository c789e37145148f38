package policy_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
)

// canaryMessage plants a canary in every value that must not reach a log.
const canaryMessage = `{"id":"00000000-0000-4000-8000-000000000001","type":"referral","from":"KZ-MTSZN","to":"UN-UNICEF",
 "purpose":"rehabilitation-referral","legal_basis":"CANARYLAW","iat":1,"exp":2,
 "subject":{"ref":"CANARYREF","names":{"primary":"CANARYNAME"},"birth_date":"2011-02-03","birth_date_basis":"CANARYBASIS",
   "documents":[{"number":"CANARYDOC"}],"biometrics":{"template_ref":"CANARYTPL"},"location":{"country":"SYR"},"unknown":"CANARYUNKNOWN"},
 "record":{"service_type":"mhpss","priority":"CANARYPRIORITY","decided_by":"CANARYDECIDER","outcome":"CANARYOUTCOME","notes":"CANARYNOTES",
   "psychosocial":{"a":"CANARYPSY"},"allegations":{"s":"CANARYALLEG"},"requested_assertions":["identity_match","CANARYASSERT"],"document_valid":"CANARYBOOL"},
 "consent":{"id":"CANARYCONSENT","basis":"best_interests_override","given_by":"CANARYGIVER","representative_relation":"CANARYRELATION",
   "child_assent":"yes","recipients":["UN-UNICEF","KZ-CANARY"],"purposes":["rehabilitation-referral","CANARYPURPOSE"],
   "obtained_at":"CANARYTIME","override":{"approved_by_role":"child-protection","reason":"CANARYREASON","bia_ref":"CANARYBIA"}}}`

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMaskerShowsOnlyVocabularyAndFacts(t *testing.T) {
	t.Parallel()
	m := decode(t, canaryMessage)
	mk := policy.Masker{Hash: func(ref string) string { return "h" + string(rune('0'+len(ref)%10)) }}
	out, _ := json.Marshal(mk.Message(m))
	s := string(out)
	if strings.Contains(s, "CANARY") || strings.Contains(s, "2011-02-03") {
		t.Errorf("personal data or free text survives masking: %s", s)
	}
	for _, keep := range []string{`"service_type":"mhpss"`, `"basis":"best_interests_override"`, `"child_assent":"yes"`,
		`"approved_by_role":"child-protection"`, `"purpose":"rehabilitation-referral"`, `"type":"referral"`,
		`"names":"[masked]"`, `"ref":"hash:`, `"bia_ref":"hash:`, `"recipients":["UN-UNICEF","[masked]"]`,
		`"requested_assertions":["identity_match","[masked]"]`, `"priority":"[masked]"`, `"decided_by":"[masked]"`,
		`"legal_basis":"[masked]"`, `"*":"[masked]"`} {
		if !strings.Contains(s, keep) {
			t.Errorf("masked message lacks %s: %s", keep, s)
		}
	}
	if b, _ := json.Marshal(m); !strings.Contains(string(b), "CANARYNAME") {
		t.Error("the input was modified")
	}
}

func TestMaskerWithoutHashMasksReferences(t *testing.T) {
	t.Parallel()
	out, _ := json.Marshal(policy.Masker{}.Message(decode(t, canaryMessage)))
	if strings.Contains(string(out), "CANARY") || !strings.Contains(string(out), `"ref":"[masked]"`) {
		t.Errorf("references shown without a hash key: %s", out)
	}
}

func TestUnknownPurposeAndTypeAreMasked(t *testing.T) {
	t.Parallel()
	m := decode(t, `{"type":"aigerim.abenova","purpose":"aigerim-abenova","from":"KZ-MTSZN","to":"KZ-ABENOVA"}`)
	out, _ := json.Marshal(policy.Masker{Participant: func(id string) bool { return id == "KZ-MTSZN" }}.Message(m))
	if strings.Contains(strings.ToLower(string(out)), "abenova") {
		t.Errorf("a word of the sender's choosing reached the log: %s", out)
	}
	if policy.Enum("aigerim-abenova", policy.KnownPurpose) != policy.Masked || policy.Enum("family-tracing", policy.KnownPurpose) != "family-tracing" {
		t.Error("Enum")
	}
}

func TestLogPathsHideNamesOfTheSendersChoosing(t *testing.T) {
	t.Parallel()
	paths := policy.LogPaths([]string{"subject.canaryname", "record.canarysection.a", "subject.names", "canarytop", "record.gbv",
		"consent.override.canary", "subject.documents.number"})
	got, _ := json.Marshal(paths)
	if strings.Contains(string(got), "canary") {
		t.Errorf("log paths %s", got)
	}
	for _, want := range []string{`"subject.names"`, `"record.gbv"`, `"subject.*"`, `"consent.override.*"`, `"subject.documents.number"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("log paths %s lack %s", got, want)
		}
	}
}

// Logging an input anywhere is safe (STYLE 16).
func TestInputLogValue(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	log := slog.New(slog.NewJSONHandler(&b, nil))
	log.Info("x", "input", policy.Input{Now: "2026-12-01T00:00:00Z", Message: decode(t, canaryMessage)})
	if strings.Contains(b.String(), "CANARY") || !strings.Contains(b.String(), `"service_type":"mhpss"`) {
		t.Errorf("logged input: %s", b.String())
	}
}
