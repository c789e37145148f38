package exchange

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
			switch v.(type) {
			case map[string]any, []any:
				out[k] = Masked // unknown structured top-level content
			default:
				out[k] = v
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
