package oracle_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/oracle"
	"github.com/xborder/xborder/gateway/policy/synth"
)

const now = "2026-06-01T12:00:00Z"

func dataJSON(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "policies", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newOracle(t testing.TB, relax ...string) *oracle.Oracle {
	t.Helper()
	o, err := oracle.NewWithOptions(dataJSON(t), oracle.Options{Relax: relax})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// party is a participant of the demo federation (DOMAIN.md §8).
func party(t testing.TB, id string) policy.Party {
	for _, p := range synth.DemoFederation() {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("no participant %s", id)
	return policy.Party{}
}

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("test message: %v", err)
	}
	return m
}

// put sets the value at a path of member names (a name may hold a dot).
func put(m map[string]any, v any, names ...string) {
	for _, n := range names[:len(names)-1] {
		next, ok := m[n].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[n] = next
		}
		m = next
	}
	m[names[len(names)-1]] = v
}

func drop(m map[string]any, names ...string) {
	for _, n := range names[:len(names)-1] {
		m, _ = m[n].(map[string]any)
	}
	delete(m, names[len(names)-1])
}

func rulesOf(vs []oracle.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func has(vs []oracle.Violation, rule, path string) bool {
	return slices.ContainsFunc(vs, func(v oracle.Violation) bool {
		return v.Rule == rule && (path == "" || v.Path == path)
	})
}

func show(vs []oracle.Violation) string {
	var b bytes.Buffer
	for _, v := range vs {
		b.WriteString("\n\t" + v.String())
	}
	return b.String()
}

// A rehabilitation referral of an 8-year-old from social services to
// UNICEF with a representative's consent and the child's assent: DOMAIN.md
// §9 scenario s03 at the generator's Now.
const referral = `{
  "id": "3f1c2a90-0000-4000-8000-000000000001", "type": "referral",
  "from": "KZ-MTSZN", "to": "UN-UNICEF", "purpose": "rehabilitation-referral",
  "legal_basis": "agreement on file", "iat": 1780315200, "exp": 1780315500,
  "subject": {
    "ref": "S-0001", "names": {"primary": "ABENOVA", "secondary": "AIGERIM"},
    "birth_date": "2018-04-12", "birth_date_basis": "document", "sex": "F",
    "nationality_claimed": "KAZ", "relationships": [{"relation": "mother", "ref": "S-0002"}],
    "location": {"country": "SYR", "facility_type": "camp"}
  },
  "record": {
    "service_type": "mhpss", "priority": "high", "needs": ["psychosocial-support", "schooling"],
    "notes": "returned 2019, lives with grandmother",
    "psychosocial": {"assessment": "trauma symptoms, sleep problems"},
    "allegations": {"summary": "mother alleged member of listed group"},
    "health": {"conditions": ["malnutrition (resolved)"]}
  },
  "consent": {
    "id": "C-2026-001", "basis": "consent", "given_by": "representative", "child_assent": "yes",
    "recipients": ["UN-UNICEF"], "purposes": ["rehabilitation-referral"],
    "obtained_at": "2026-04-01T09:00:00Z", "expires_at": "2027-06-01T00:00:00Z",
    "representative_relation": "mother"
  }
}`

// An identity verification request from UNICEF to the civil registry with
// 1:1 biometrics under a DPIA: scenario s01.
const verification = `{
  "id": "3f1c2a90-0000-4000-8000-000000000002", "type": "identity.verification.request",
  "from": "UN-UNICEF", "to": "KZ-MJ", "purpose": "identity-verification",
  "legal_basis": "agreement on file", "iat": 1780315200, "exp": 1780315500,
  "subject": {
    "ref": "S-0001", "names": {"primary": "ABENOVA", "secondary": "AIGERIM"},
    "birth_date": "2018-04-12", "sex": "F",
    "documents": [{"code": "BC", "issuing_state": "KAZ", "number": "N1234567", "expiry": "2030-01-01"}],
    "biometrics": {"modality": "face", "template_ref": "tpl-77", "mode": "1:1", "dpia_id": "DPIA-2026-04"}
  },
  "record": {"requested_assertions": ["identity_match", "nationality_confirmed"]}
}`

// The civil registry's answer to it, with the registry record: scenario s11.
const answer = `{
  "id": "3f1c2a90-0000-4000-8000-000000000003", "type": "identity.verification.response",
  "from": "KZ-MJ", "to": "UN-UNICEF", "purpose": "identity-verification",
  "legal_basis": "agreement on file", "iat": 1780315200, "exp": 1780315500,
  "in_reply_to": "3f1c2a90-0000-4000-8000-000000000002",
  "subject": {"ref": "S-0001", "birth_date": "2018-04-12"},
  "record": {"outcome": "match", "nationality_confirmed": true, "decided_by": "registrar",
             "registry_record": {"address": "Almaty"}}
}`

func answerRequest() *policy.Request {
	return &policy.Request{
		ID: "3f1c2a90-0000-4000-8000-000000000002", Type: "identity.verification.request",
		From: "UN-UNICEF", To: "KZ-MJ", Purpose: "identity-verification",
		RequestedAssertions: []string{"identity_match", "nationality_confirmed"},
	}
}

// A prosecution referral about an adult: scenario s08.
const evidence = `{
  "id": "3f1c2a90-0000-4000-8000-000000000004", "type": "referral",
  "from": "KZ-MVD", "to": "KZ-GP", "purpose": "prosecution-evidence",
  "legal_basis": "agreement on file", "iat": 1780315200, "exp": 1780315500,
  "subject": {"ref": "S-0001", "names": {"primary": "SARINA"}, "birth_date": "1994-07-03", "sex": "F"},
  "record": {"service_type": "prosecution", "notes": "case 2026/114", "offence_date": "2016-03-01",
             "allegations": {"summary": "membership of a listed group"}, "psychosocial": {"assessment": "PTSD"}}
}`

// A border-screening request about an adult.
const screening = `{
  "id": "3f1c2a90-0000-4000-8000-000000000005", "type": "identity.verification.request",
  "from": "KZ-MVD", "to": "UZ-MVD", "purpose": "border-screening",
  "legal_basis": "agreement on file", "iat": 1780315200, "exp": 1780315500,
  "subject": {"ref": "S-0001", "names": {"primary": "SARINA"}, "birth_date": "1994-07-03", "sex": "F"},
  "record": {"requested_assertions": ["identity_match"]}
}`

func inputOf(t testing.TB, msg string) policy.Input {
	m := decode(t, msg)
	return policy.Input{
		Now: now, Message: m,
		Sender: party(t, m["from"].(string)), Recipient: party(t, m["to"].(string)),
	}
}
