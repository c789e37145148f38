package policy

import (
	"log/slog"
	"strings"
	"time"
)

// Masked stands in for every value a log must not show.
const Masked = "[masked]"

// Masker makes a message fit for a log line or the audit log (STYLE 10, 16):
// its structure stays visible — which known fields were present — but a
// value is shown only when it is a protocol fact (ids, times) or a member of
// a closed vocabulary of DOMAIN.md §1–§5 (service_type, outcome, basis, …);
// references (subject.ref, consent.id, bia_ref) only as keyed hashes; free
// text (legal_basis, priority, decided_by, notes, representative_relation,
// override.reason) and every other value never. A member name that is not a
// DOMAIN field name is the sender's choice, could itself be personal data,
// and is shown as "*".
type Masker struct {
	// Hash is the keyed hash of a reference (the audit log's SubjectHash);
	// without it a reference is masked.
	Hash func(ref string) string
	// Participant reports whether an id is a registered participant, which
	// may then be shown (consent.recipients, from, to); without it only the
	// message's own from and to are shown.
	Participant func(id string) bool
}

// Vocabularies of DOMAIN.md (§1 roles, §2 purposes and types, §4–§5 closed
// sets). A value outside its vocabulary is masked, so that a word of the
// sender's choosing never reaches a log through a field that looks
// enumerated.
var (
	vocabPurposes = set("identity-verification", "repatriation-logistics", "family-tracing",
		"rehabilitation-referral", "prosecution-evidence", "border-screening", "hr-monitoring")
	vocabTypes = set("identity.verification.request", "identity.verification.response", "referral",
		"referral.response", "consent.withdrawal")
	vocabRoles = set("consular", "civil-registry", "border-management", "law-enforcement", "prosecution",
		"child-justice", "social-services", "child-protection", "health", "humanitarian",
		"human-rights-monitoring", "compliance")
	vocab = map[string]map[string]bool{
		"subject.birth_date_basis":          set("document", "declared", "assessed", "unknown"),
		"record.service_type":               set("mhpss", "health", "education", "legal_aid", "alternative_care", "tracing", "livelihood", "prosecution", "monitoring", "travel"),
		"record.requested_assertions":       set("identity_match", "nationality_confirmed", "document_valid"),
		"record.outcome":                    set("match", "no_match", "inconclusive", "refused"),
		"record.status":                     set("accepted", "rejected", "done"),
		"record.fields_confirmed":           fieldNames["subject"],
		"consent.basis":                     set("consent", "best_interests_override"),
		"consent.given_by":                  set("subject", "representative"),
		"consent.child_assent":              set("yes", "no", "n/a"),
		"consent.purposes":                  vocabPurposes,
		"consent.override.approved_by_role": vocabRoles,
	}
	booleans   = set("record.nationality_confirmed", "record.document_valid")
	references = set("subject.ref", "consent.id", "consent.override.bia_ref")
	times      = set("consent.obtained_at", "consent.expires_at")
)

// fieldNames are the member names DOMAIN.md §3–§5 gives each section, at any
// depth: a path made of these may be logged.
var fieldNames = map[string]map[string]bool{
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

// TopLevelFields are the members of a message (PROTOCOL §2).
var TopLevelFields = set("id", "type", "from", "to", "purpose", "legal_basis", "iat", "exp", "in_reply_to",
	"subject", "record", "consent")

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// KnownPurpose and KnownType report whether a value is of DOMAIN §2's
// catalogue, and may be logged.
func KnownPurpose(s string) bool { return vocabPurposes[s] }

// KnownType: see KnownPurpose.
func KnownType(s string) bool { return vocabTypes[s] }

// Enum returns s when it is in the vocabulary the test gives, else Masked.
func Enum(s string, known func(string) bool) string {
	if known(s) {
		return s
	}
	return Masked
}

// LogPath is a field path fit for logs: every segment below subject, record
// or consent that is not a DOMAIN field name becomes "*", and so does a
// top-level member outside PROTOCOL §2.
func LogPath(p string) string {
	parts := strings.Split(p, ".")
	known := fieldNames[parts[0]]
	if known == nil && !TopLevelFields[parts[0]] {
		parts[0] = "*"
	}
	for i := 1; i < len(parts); i++ {
		if known == nil || !known[parts[i]] {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, ".")
}

// LogPaths is LogPath of every path, without repeats.
func LogPaths(paths []string) []string {
	if len(paths) == 0 {
		return paths
	}
	out := make([]string, 0, len(paths))
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		c := LogPath(p)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// Message returns a masked copy of msg (the input is not modified).
func (m Masker) Message(msg map[string]any) map[string]any {
	out := make(map[string]any, len(msg))
	for k, v := range msg {
		switch k {
		case "subject", "record", "consent":
			out[k] = m.section(k, v, msg)
		case "id", "in_reply_to", "iat", "exp":
			out[k] = scalarOrMasked(v)
		case "type":
			out[k] = m.enum(v, KnownType)
		case "purpose":
			out[k] = m.enum(v, KnownPurpose)
		case "from", "to":
			out[k] = m.participant(v, msg)
		case "legal_basis":
			out[k] = Masked
		default:
			out["*"] = Masked // a member of the sender's choosing is not shown
		}
	}
	return out
}

func (m Masker) section(path string, v any, msg map[string]any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		names := fieldNames[strings.SplitN(path, ".", 2)[0]]
		for k, c := range t {
			if !names[k] {
				out["*"] = Masked
				continue
			}
			p := path + "." + k
			switch {
			case p == "consent.override":
				out[k] = m.section(p, c, msg)
			case p == "consent.recipients":
				out[k] = m.list(c, func(s string) any { return m.participant(s, msg) })
			default:
				out[k] = m.value(p, c)
			}
		}
		return out
	}
	return Masked
}

// value masks the value of a known path.
func (m Masker) value(path string, v any) any {
	switch {
	case references[path]:
		s, ok := v.(string)
		if !ok || m.Hash == nil {
			return Masked
		}
		return "hash:" + m.Hash(s)
	case booleans[path]:
		if b, ok := v.(bool); ok {
			return b
		}
	case times[path]:
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339, s); err == nil {
				return s
			}
		}
	case vocab[path] != nil:
		words := vocab[path]
		known := func(s string) bool { return words[s] }
		if _, ok := v.([]any); ok {
			return m.list(v, func(s string) any { return Enum(s, known) })
		}
		return m.enum(v, known)
	}
	return Masked
}

func (m Masker) list(v any, each func(string) any) any {
	l, ok := v.([]any)
	if !ok {
		return Masked
	}
	out := make([]any, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			out[i] = Masked
			continue
		}
		out[i] = each(s)
	}
	return out
}

func (m Masker) enum(v any, known func(string) bool) any {
	if s, ok := v.(string); ok {
		return Enum(s, known)
	}
	return Masked
}

// participant shows a registered participant's id (or, without a registry,
// the message's own from and to, which the gateway checked).
func (m Masker) participant(v any, msg map[string]any) any {
	s, ok := v.(string)
	switch {
	case !ok:
		return Masked
	case m.Participant != nil:
		if m.Participant(s) {
			return s
		}
	case s == msg["from"] || s == msg["to"]:
		return s
	}
	return Masked
}

func scalarOrMasked(v any) any {
	switch v.(type) {
	case map[string]any, []any:
		return Masked
	}
	return v
}

// LogValue makes logging an input anywhere safe (STYLE 16): the message is
// masked (references too, as no hash key is at hand here); the registry
// facts of the parties are not personal data.
func (in Input) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("now", in.Now),
		slog.Any("message", Masker{}.Message(in.Message)),
		slog.Any("sender", in.Sender),
		slog.Any("recipient", in.Recipient),
		slog.Any("request", in.Request),
		slog.Bool("consent_withdrawn", in.ConsentWithdrawn),
	)
}

// ListedPath reports whether p is a field path of DOMAIN.md: a member of a
// message (PROTOCOL §2), or a section (subject, record, consent) followed
// by DOMAIN field names of that section. Anything else — a value, a name
// of the sender's choosing — is not, and is never shown as a path.
func ListedPath(p string) bool {
	parts := strings.Split(p, ".")
	known := fieldNames[parts[0]]
	if known == nil {
		return len(parts) == 1 && TopLevelFields[parts[0]]
	}
	for _, s := range parts[1:] {
		if !known[s] {
			return false
		}
	}
	return true
}
