package exchange

import "strings"

// Masked stands in for every value that could identify or describe a person.
const Masked = "[masked]"

// Fields whose values are case metadata or protocol facts, not personal data,
// and so are shown in the decision log. Everything else in subject, record
// and consent is masked; top-level fields are protocol metadata.
var (
	subjectShown = map[string]bool{"ref": true, "birth_date_basis": true}
	recordShown  = map[string]bool{
		"service_type": true, "priority": true, "requested_assertions": true, "outcome": true,
		"nationality_confirmed": true, "document_valid": true, "fields_confirmed": true,
		"decided_by": true, "status": true,
	}
	consentShown = map[string]bool{
		"id": true, "basis": true, "given_by": true, "representative_relation": true, "child_assent": true,
		"recipients": true, "purposes": true, "obtained_at": true, "expires_at": true,
	}
	overrideShown = map[string]bool{"approved_by_role": true, "bia_ref": true}
)

// Field names of DOMAIN.md §4 and §5. A key outside these is the sender's
// choice and could itself be personal data (a name used as a key), so logs
// and the audit log show it as "*".
var knownFields = map[string]map[string]bool{
	"subject": set("ref", "names", "primary", "secondary", "original_script", "birth_date", "birth_date_basis",
		"age_estimate", "sex", "place_of_birth", "country", "locality", "nationality_claimed", "documents",
		"code", "issuing_state", "number", "expiry", "relationships", "relation", "location", "facility_type",
		"biometrics", "modality", "template_ref", "mode", "dpia_id"),
	"record": set("requested_assertions", "outcome", "nationality_confirmed", "document_valid", "fields_confirmed",
		"decided_by", "service_type", "priority", "needs", "notes", "health", "legal_status", "allegations",
		"psychosocial", "gbv", "trafficking", "best_interests", "child_statement", "offence_date", "status"),
	"consent": set("id", "basis", "given_by", "representative_relation", "child_assent", "recipients", "purposes",
		"obtained_at", "expires_at", "override", "approved_by_role", "reason", "bia_ref"),
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// LogPaths returns field paths fit for logs and the audit log: every
// segment below subject, record or consent that is not a known field name
// becomes "*".
func LogPaths(paths []string) []string {
	if len(paths) == 0 {
		return paths
	}
	out := make([]string, 0, len(paths))
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		parts := strings.Split(p, ".")
		known := knownFields[parts[0]]
		for i := 1; i < len(parts); i++ {
			if known == nil || !known[parts[i]] {
				parts[i] = "*"
			}
		}
		if known == nil && len(parts) > 0 && !topLevel[parts[0]] {
			parts[0] = "*"
		}
		c := strings.Join(parts, ".")
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

var topLevel = set("id", "type", "from", "to", "purpose", "legal_basis", "iat", "exp", "in_reply_to", "subject", "record", "consent")

// MaskMessage returns a copy of a message fit for the decision log: the
// structure (which fields were present) stays visible to a compliance
// officer, the personal values do not — names, dates of birth, documents,
// biometrics, locations and every record section are replaced by Masked.
func MaskMessage(msg map[string]any) map[string]any {
	out := make(map[string]any, len(msg))
	for k, v := range msg {
		switch k {
		case "subject":
			out[k] = maskSection(v, subjectShown, nil)
		case "record":
			out[k] = maskSection(v, recordShown, nil)
		case "consent":
			out[k] = maskSection(v, consentShown, map[string]map[string]bool{"override": overrideShown})
		default:
			switch {
			case !topLevel[k]:
				out["*"] = Masked // a key of the sender's choosing is not shown
			default:
				switch v.(type) {
				case map[string]any, []any:
					out[k] = Masked // unexpected structured content
				default:
					out[k] = v
				}
			}
		}
	}
	return out
}

func maskSection(v any, shown map[string]bool, nested map[string]map[string]bool) any {
	m, ok := v.(map[string]any)
	if !ok {
		return Masked
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		if !knownFields["subject"][k] && !knownFields["record"][k] && !knownFields["consent"][k] {
			out["*"] = Masked // a key of the sender's choosing is not shown
			continue
		}
		switch {
		case shown[k]:
			out[k] = val
		case nested[k] != nil:
			out[k] = maskSection(val, nested[k], nil)
		default:
			out[k] = Masked
		}
	}
	return out
}
