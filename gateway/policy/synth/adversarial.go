package synth

import (
	"encoding/json"
	"strings"
)

// Mutations are the adversarial changes a case may get, one to three each.
var Mutations = []string{
	"unknown-member", "lookalike-member", "forbidden-member", "structured-member",
	"dotted-section", "deep-nesting", "wrong-type", "smuggle", "name-text", "consent-shape",
}

// unknownNames follow the member-name rule and mean nothing to the rules.
var unknownNames = []string{"extra", "x_note", "meta", "internal_id", "comment", "source-system", "v2", "A", strings.Repeat("z", 64)}

// lookalikeNames follow the member-name rule and look like protected
// members or sections: only an exact match is on an allow-list (R10).
var lookalikeNames = []string{
	"Psychosocial", "psychosocial_", "PSYCHOSOCIAL", "psychosocial-", "_psychosocial", "subject", "record",
	"names", "consent", "gbv-", "GBV", "Biometrics", "biometrics_", "template_ref", "override", "Child_Statement",
	"best-interests", "bestInterests", "location", "dpia_id", "ref", "id", "allegations", "psychosocial",
	"trafficking", "health", "legal_status", "documents", "number", "Names", "primary",
}

// forbiddenNames break the member-name rule of PROTOCOL.md §2: dots that
// make a path ambiguous, spaces, lookalike letters, invisible characters,
// empty, too long, punctuation, control characters.
var forbiddenNames = []string{
	"psychosocial.assessment", "biometrics.template_ref", "names.primary", "record.gbv", "consent.override",
	"gbv.details", "subject.biometrics", ".psychosocial", "psychosocial.", "best interests", "psycho social",
	"psychosoc\u0456al", "\u0430llegations", "psycho\u200bsocial", "\u200bgbv", "gbv\u200d", "", strings.Repeat("a", 65),
	"$where", "a/b", "nul\x00byte", "tab\tname", "trafficking\u00a0", "\uff47\uff42\uff56", "\u00e9", "name:x",
	"\U0001F642", "gbv\u0301", "\ufeffgbv", "child_statement\n",
}

// dottedSections are the attack that started this work: a member whose
// name is a field path, which a redactor splitting on dots never finds.
var dottedSections = []struct{ sec, name string }{
	{"record", "psychosocial.assessment"}, {"record", "gbv.notes"}, {"record", "child_statement.text"},
	{"subject", "biometrics.template_ref"}, {"subject", "names.primary"}, {"subject", "location.country"},
	{"consent", "override.bia_ref"}, {"record", "trafficking.indicators"},
}

// structuredFields are the subject fields with §4 members.
var structuredFields = []string{"names", "place_of_birth", "location", "biometrics", "documents", "relationships"}

type spot struct {
	at string
	m  map[string]any
}

// spots lists, in a fixed order, the objects a mutation may write into.
func (b *builder) spots() []spot {
	var out []spot
	if b.subject != nil {
		out = append(out, spot{"subject", b.subject})
		for _, f := range structuredFields {
			switch v := b.subject[f].(type) {
			case map[string]any:
				out = append(out, spot{"subject." + f, v})
			case []any:
				for _, e := range v {
					if m, ok := e.(map[string]any); ok {
						out = append(out, spot{"subject." + f, m})
					}
				}
			}
		}
	}
	if b.record != nil {
		out = append(out, spot{"record", b.record})
		for _, sec := range b.recordSections() {
			if m, ok := b.record[sec].(map[string]any); ok {
				out = append(out, spot{"record." + sec, m})
			}
		}
	}
	if b.consent != nil {
		out = append(out, spot{"consent", b.consent})
		if m, ok := b.consent["override"].(map[string]any); ok {
			out = append(out, spot{"consent.override", m})
		}
	}
	if len(out) == 0 {
		b.subject = map[string]any{"ref": b.ref()}
		b.msg["subject"] = b.subject
		out = append(out, spot{"subject", b.subject})
	}
	return out
}

func (b *builder) find(spots []spot, at string) map[string]any {
	for _, s := range spots {
		if s.at == at {
			return s.m
		}
	}
	return nil
}

// leafValue is a value of any JSON type, as a member of unknown meaning
// might carry.
func (b *builder) leafValue() any {
	switch b.g.r.IntN(6) {
	case 0:
		return json.Number("7")
	case 1:
		return map[string]any{"assessment": "hidden content"}
	case 2:
		return []any{"hidden", map[string]any{"note": "hidden"}}
	case 3:
		return nil
	case 4:
		return true
	}
	return "hidden content"
}

func (b *builder) mutate() {
	g := b.g
	if b.age.bad {
		b.other("adv:bad-age")
	}
	for n := 1 + g.r.IntN(3); n > 0; n-- {
		kind := g.pick(Mutations)
		b.other("adv:" + kind)
		spots := b.spots()
		switch kind {
		case "unknown-member", "lookalike-member", "forbidden-member":
			pool := map[string][]string{"unknown-member": unknownNames, "lookalike-member": lookalikeNames, "forbidden-member": forbiddenNames}[kind]
			s := spots[g.r.IntN(len(spots))]
			s.m[g.pick(pool)] = b.leafValue()
			b.other("adv-at:" + s.at)
		case "structured-member":
			var in []spot
			for _, s := range spots {
				if strings.HasPrefix(s.at, "subject.") || s.at == "consent.override" {
					in = append(in, s)
				}
			}
			if len(in) == 0 {
				in = spots
			}
			s := in[g.r.IntN(len(in))]
			name := g.pick(lookalikeNames)
			if g.chance(0.4) {
				name = g.pick(forbiddenNames)
			}
			s.m[name] = b.leafValue()
			b.other("adv-at:" + s.at)
		case "dotted-section":
			d := dottedSections[g.r.IntN(len(dottedSections))]
			at, m := d.sec, b.find(spots, d.sec)
			if m == nil {
				at, m = spots[0].at, spots[0].m
			}
			m[d.name] = "protected content"
			b.other("adv-at:" + at)
		case "deep-nesting":
			s := spots[g.r.IntN(len(spots))]
			s.m[g.pick(unknownNames)] = b.nest(2 + g.r.IntN(5))
			b.other("adv-at:" + s.at)
		case "wrong-type":
			b.wrongType(spots, false)
		case "smuggle":
			b.wrongType(spots, true)
		case "name-text":
			b.nameText(spots)
		case "consent-shape":
			b.consentShape()
		}
	}
}

// nest makes objects in arrays in objects, depth levels deep, with names
// from every pool.
func (b *builder) nest(depth int) any {
	g := b.g
	if depth == 0 {
		return "deep content"
	}
	var name string
	switch r := g.r.Float64(); {
	case r < 0.2:
		name = g.pick(forbiddenNames)
	case r < 0.6:
		name = g.pick(lookalikeNames)
	default:
		name = g.pick(unknownNames)
	}
	obj := map[string]any{name: b.nest(depth - 1)}
	if g.chance(0.4) {
		return []any{obj, "x"}
	}
	return obj
}

var typedFields = []struct{ at, key string }{
	{"subject", "sex"}, {"subject", "ref"}, {"subject", "nationality_claimed"}, {"subject.names", "primary"},
	{"subject", "birth_date_basis"}, {"record", "service_type"}, {"record", "notes"}, {"record", "priority"},
	{"record", "outcome"}, {"record", "decided_by"}, {"record", "status"}, {"record", "requested_assertions"},
	{"record", "needs"}, {"consent", "given_by"}, {"consent", "child_assent"}, {"consent", "id"},
	{"consent", "expires_at"}, {"consent", "recipients"}, {"consent.override", "bia_ref"},
	{"consent.override", "approved_by_role"}, {"subject.biometrics", "mode"}, {"subject.biometrics", "dpia_id"},
	{"subject.location", "country"}, {"subject.documents", "number"}, {"record", "offence_date"},
}

// wrongType puts a value of another type where the spec has a string or a
// list; smuggle puts protection data inside such a field.
func (b *builder) wrongType(spots []spot, smuggle bool) {
	g := b.g
	var cands []spot
	var keys []string
	for _, t := range typedFields {
		for _, s := range spots {
			if s.at == t.at {
				if _, ok := s.m[t.key]; ok {
					cands = append(cands, s)
					keys = append(keys, t.key)
				}
			}
		}
	}
	if len(cands) == 0 {
		cands = []spot{spots[0]}
		keys = []string{"notes"}
	}
	i := g.r.IntN(len(cands))
	var v any
	if smuggle {
		v = map[string]any{"psychosocial": map[string]any{"assessment": "PTSD"}, "gbv": map[string]any{"disclosed": true}}
		if g.chance(0.4) {
			v = []any{"x", v}
		}
	} else {
		v = []any{json.Number("42"), json.Number("-1.5"), map[string]any{"value": "x"}, []any{"x"}, nil, true}[g.r.IntN(6)]
		v = CloneValue(v)
	}
	cands[i].m[keys[i]] = v
	b.other("adv-at:" + cands[i].at)
}

// nameText writes what looks like a person's name and birth into free text.
func (b *builder) nameText(spots []spot) {
	g := b.g
	text := g.pick(givenNames) + " " + g.pick(surnames) + ", born 12.04.2018 in Raqqa"
	switch r := g.r.IntN(3); {
	case r == 0 && b.find(spots, "consent.override") != nil:
		b.find(spots, "consent.override")["reason"] = text
	case b.record != nil:
		key := "notes"
		if r == 1 {
			key = "priority"
		}
		if _, ok := b.record["decided_by"]; ok && r == 2 {
			key = "decided_by"
		}
		b.record[key] = text
	default:
		spots[0].m["notes"] = text
	}
}

// consentShape gives consent members the wrong shape: a recipient or
// purpose as a string rather than a list, an override that is not an
// object, an assent that is not one of its values (§5).
func (b *builder) consentShape() {
	g := b.g
	if b.consent == nil {
		b.consent = map[string]any{"id": "C-2026-999", "basis": "consent", "given_by": "subject"}
		b.msg["consent"] = b.consent
	}
	switch g.r.IntN(6) {
	case 0:
		b.consent["recipients"] = b.recipient.ID
	case 1:
		b.consent["purposes"] = b.purpose
	case 2:
		b.consent["override"] = "approved"
	case 3:
		b.consent["child_assent"] = true
	case 4:
		b.consent["expires_at"] = json.Number("1893456000")
	default:
		b.consent["given_by"] = "Subject"
	}
	b.other("adv-at:consent")
}
