package synth_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/policy/synth"
)

func loadSpec(t testing.TB) *synth.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "policies", "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := synth.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestLoadRefusesDataWithoutRules(t *testing.T) {
	for name, data := range map[string]string{
		"not json":        `{`,
		"no xborder_data": `{}`,
		"no purposes":     `{"xborder_data":{"thresholds":{"adult":18}}}`,
	} {
		if _, err := synth.Load([]byte(data)); err == nil {
			t.Errorf("%s: Load accepted it", name)
		}
	}
}

func TestDemoFederationIsDomainSection8(t *testing.T) {
	parties := synth.DemoFederation()
	if len(parties) != 14 {
		t.Fatalf("%d participants, DOMAIN.md §8 lists 14", len(parties))
	}
	idRE := regexp.MustCompile(`^(?:[A-Z]{2}|UN)-[A-Z0-9]{2,20}$`)
	roles := map[string]string{}
	for _, p := range parties {
		if !idRE.MatchString(p.ID) {
			t.Errorf("%s is not a participant id (PROTOCOL.md §1)", p.ID)
		}
		un := strings.HasPrefix(p.ID, "UN-")
		if un && (p.Kind != "un-entity" || p.Country != "") || !un && (p.Kind != "member-state" || p.Country != p.ID[:2]) {
			t.Errorf("%s: kind %s, country %q", p.ID, p.Kind, p.Country)
		}
		roles[p.ID] = strings.Join(p.Roles, ",")
	}
	for id, want := range map[string]string{
		"KZ-MVD": "law-enforcement,border-management", "UN-UNICEF": "child-protection,humanitarian",
		"KZ-JC": "child-justice", "IQ-MOI": "civil-registry", "UN-OHCHR": "human-rights-monitoring", "UN-UNOCT": "compliance",
	} {
		if roles[id] != want {
			t.Errorf("%s roles %q, want %q", id, roles[id], want)
		}
	}
}

func TestSameSeedSameCases(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	a := synth.New(42, spec, nil, synth.Options{})
	b := synth.New(42, spec, nil, synth.Options{})
	c := synth.New(43, spec, nil, synth.Options{})
	differ := 0
	for i := range 2000 {
		x, y, z := a.Next(), b.Next(), c.Next()
		if !bytes.Equal(x.Raw, y.Raw) || x.Label != y.Label || x.Invalid != y.Invalid || !reflect.DeepEqual(x.Input, y.Input) {
			t.Fatalf("case %d differs between two generators of seed 42", i)
		}
		if !bytes.Equal(x.Raw, z.Raw) {
			differ++
		}
	}
	if differ < 1900 {
		t.Errorf("seeds 42 and 43 gave %d different cases of 2000", differ)
	}
}

// walkNumbers fails when a number in v is not a json.Number.
func walkNumbers(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			walkNumbers(t, e)
		}
	case []any:
		for _, e := range x {
			walkNumbers(t, e)
		}
	case nil, string, bool, json.Number:
	default:
		t.Fatalf("a %T in a message", v)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRawIsTheMessage(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	g := synth.New(7, spec, nil, synth.Options{})
	now := g.Now().Unix()
	for i := range 3000 {
		c := g.Next()
		dec := json.NewDecoder(bytes.NewReader(c.Raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("case %d (%s): Raw does not decode: %v", i, c.Label, err)
		}
		if dec.More() {
			t.Fatalf("case %d: Raw has more than one value", i)
		}
		if !reflect.DeepEqual(m, c.Input.Message) {
			t.Fatalf("case %d (%s): Raw decodes to another message", i, c.Label)
		}
		walkNumbers(t, c.Input.Message)
		msg := c.Input.Message
		if id, _ := msg["id"].(string); !uuidRE.MatchString(id) {
			t.Fatalf("case %d: id is not a UUID", i)
		}
		if msg["from"] != c.Input.Sender.ID || msg["to"] != c.Input.Recipient.ID || msg["from"] == msg["to"] {
			t.Fatalf("case %d: from/to do not name two distinct parties of the input", i)
		}
		if lb, _ := msg["legal_basis"].(string); lb == "" {
			t.Fatalf("case %d: empty legal_basis", i)
		}
		iat, err1 := msg["iat"].(json.Number).Float64()
		exp, err2 := msg["exp"].(json.Number).Float64()
		if err1 != nil || err2 != nil || int64(iat) != now || exp <= iat || exp-iat > 3600 {
			t.Fatalf("case %d: iat %v exp %v (now %d)", i, msg["iat"], msg["exp"], now)
		}
		if c.Input.Now != "2026-06-01T12:00:00Z" {
			t.Fatalf("case %d: now %s", i, c.Input.Now)
		}
	}
}

func TestNowIsAnOption(t *testing.T) {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	c := synth.New(1, loadSpec(t), nil, synth.Options{Now: now}).Next()
	if c.Input.Now != "2031-01-02T03:04:05Z" {
		t.Errorf("now %s", c.Input.Now)
	}
	if iat, _ := c.Input.Message["iat"].(json.Number).Float64(); int64(iat) != now.Unix() {
		t.Errorf("iat %v, want %d", c.Input.Message["iat"], now.Unix())
	}
}

// nameRE is PROTOCOL.md §2 written as the regular expression it is, apart
// from the generator's own check.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func badName(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !nameRE.MatchString(k) || badName(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if badName(e) {
				return true
			}
		}
	}
	return false
}

func TestInvalidMeansABadMemberName(t *testing.T) {
	t.Parallel()
	g := synth.New(11, loadSpec(t), nil, synth.Options{})
	invalid := 0
	for i := range 5000 {
		c := g.Next()
		m := c.Input.Message
		want := badName(m["subject"]) || badName(m["record"]) || badName(m["consent"])
		if c.Invalid != want {
			t.Fatalf("case %d (%s): Invalid %v, a bad name: %v", i, c.Label, c.Invalid, want)
		}
		if c.Invalid && !c.Adversarial {
			t.Fatalf("case %d: a realistic case with a bad name", i)
		}
		for k := range m {
			if !slices.Contains([]string{"id", "type", "from", "to", "purpose", "legal_basis", "iat", "exp", "in_reply_to", "subject", "consent", "record"}, k) {
				t.Fatalf("case %d: an unknown top-level member", i)
			}
		}
		if c.Invalid {
			invalid++
		}
	}
	if invalid < 500 || invalid > 2000 {
		t.Errorf("%d invalid cases of 5000", invalid)
	}
}

func TestCoverage(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	g := synth.New(2026, spec, nil, synth.Options{})
	cov := synth.NewCoverage()
	adversarial := 0
	for range 5000 {
		c := g.Next()
		cov.Add(c)
		if c.Adversarial {
			adversarial++
		}
	}
	if adversarial < 1800 || adversarial > 2200 {
		t.Errorf("%d adversarial cases of 5000, want about 40%%", adversarial)
	}
	want := map[string][]string{
		"purpose-type": spec.PurposeTypes(),
		"role-pair":    spec.RolePairs(synth.DemoFederation()),
		"age":          synth.AgeBands(spec),
		"consent":      synth.ConsentCases(),
		"section":      spec.Sections(),
	}
	if len(want["role-pair"]) < 40 {
		t.Errorf("only %d role pairs in the demo federation", len(want["role-pair"]))
	}
	if len(spec.Sections()) != 10 {
		t.Errorf("%d L3/L4 sections, DOMAIN.md §3 lists 10", len(spec.Sections()))
	}
	for _, m := range synth.Mutations {
		want["other"] = append(want["other"], "adv:"+m)
	}
	for _, at := range []string{"subject", "record", "consent", "consent.override", "subject.names", "subject.place_of_birth",
		"subject.documents", "subject.relationships", "subject.location", "subject.biometrics", "record.psychosocial"} {
		want["other"] = append(want["other"], "adv-at:"+at)
	}
	want["other"] = append(want["other"],
		"pt:allowed", "pt:type-not-allowed", "pt:unknown-purpose", "pair:catalogue", "pair:any",
		"agr:active", "agr:expired", "agr:none", "suspended:sender", "suspended:recipient",
		"resp:match", "resp:no-request", "resp:same-direction", "resp:other-purpose", "resp:other-id",
		"resp:no-in-reply-to", "resp:other-type", "resp:unasked-assertion", "resp:registry-record", "resp:extra-section",
		"service:legal_aid", "service:other", "bio:1:1/dpia", "bio:1:N/dpia", "bio:1:1/no-dpia", "bio:1:1/empty-dpia",
		"offence:under-macr", "offence:at-macr", "offence:over-macr", "offence:bad", "offence:none",
		"adv:bad-age", "invalid-name", "withdrawal:extra-members")
	for dim, values := range want {
		if missing := cov.Missing(dim, values); len(missing) > 0 {
			t.Errorf("%s: no case of %s", dim, strings.Join(missing, ", "))
		}
	}
	if n := cov.Count("other", "agr:expired"); n == 0 {
		t.Error("no case under the expired TJ-UN-2020")
	}
}

// members collects the paths of object members, array indices left out.
func members(v any, prefix string, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := prefix + "." + k
			into[p] = true
			members(e, p, into)
		}
	case []any:
		for _, e := range x {
			members(e, prefix, into)
		}
	}
}

// TestEveryListedField: every field of every allow-list, every member of
// the structured fields of DOMAIN.md §4 and of consent (§5) is sent.
func TestEveryListedField(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	g := synth.New(2026, spec, nil, synth.Options{Mix: synth.Mix{Realistic: 1}})
	seen := map[string]bool{}
	for range 5000 {
		c := g.Next()
		for _, sec := range []string{"subject", "record", "consent"} {
			members(c.Input.Message[sec], sec, seen)
		}
	}
	want := []string{
		"subject.names.primary", "subject.names.secondary", "subject.names.original_script",
		"subject.place_of_birth.country", "subject.place_of_birth.locality",
		"subject.documents.code", "subject.documents.issuing_state", "subject.documents.number", "subject.documents.expiry",
		"subject.relationships.relation", "subject.relationships.ref", "subject.location.country", "subject.location.facility_type",
		"subject.biometrics.modality", "subject.biometrics.template_ref", "subject.biometrics.mode", "subject.biometrics.dpia_id",
		"consent.id", "consent.basis", "consent.given_by", "consent.representative_relation", "consent.child_assent",
		"consent.recipients", "consent.purposes", "consent.obtained_at", "consent.expires_at",
		"consent.override.approved_by_role", "consent.override.reason", "consent.override.bia_ref",
		"record.offence_date",
	}
	for _, byType := range spec.AllowLists {
		for _, a := range byType {
			for _, f := range a.Subject {
				want = append(want, "subject."+f)
			}
			for _, f := range a.Record {
				want = append(want, "record."+f)
			}
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no realistic case sends %s", w)
		}
	}
}

func TestAdversarialNames(t *testing.T) {
	g := synth.New(5, loadSpec(t), nil, synth.Options{Mix: synth.Mix{Adversarial: 1}})
	dotted := false
	for range 2000 {
		c := g.Next()
		if !c.Adversarial {
			t.Fatal("a realistic case with Mix{Adversarial: 1}")
		}
		if rec, ok := c.Input.Message["record"].(map[string]any); ok {
			if _, ok := rec["psychosocial.assessment"]; ok {
				dotted = true
			}
		}
	}
	if !dotted {
		t.Error(`no record["psychosocial.assessment"] in 2000 adversarial cases`)
	}
	g = synth.New(5, loadSpec(t), nil, synth.Options{Mix: synth.Mix{Realistic: 1}})
	for range 2000 {
		if c := g.Next(); c.Adversarial || c.Invalid {
			t.Fatal("an adversarial case with Mix{Realistic: 1}")
		}
	}
}

func BenchmarkNext(b *testing.B) {
	g := synth.New(1, loadSpec(b), nil, synth.Options{})
	b.ReportAllocs()
	for b.Loop() {
		g.Next()
	}
}
