package oracle

import (
	"encoding/json"
	"errors"
	"fmt"
)

// rules is what the oracle reads from the policy data (policies/data.json),
// and nothing else: the Rego that uses the same data is never consulted.
type rules struct {
	purposes   map[string]purposeRule
	responses  map[string]string // response type → request type
	agreements []agreement
	thresholds thresholds
	topLevel   set
	allow      map[string]map[string]allowRule // purpose → type
	l4Paths    set
	l4         struct{ purposes, recipientRoles, neverPurposes set }
	screening  struct{ noChildren, noChildBiometricsRoles set }
	prosecute  struct {
		purposes  set
		childRole string
	}
	biometrics struct {
		purposes, types set
		mode            string
	}
	approver string
	answers  map[string][]string // record field → assertions it answers (R15)
}

type purposeRule struct {
	types, senders, recipients set
	consentRequired            bool
}

type agreement struct {
	id                    string
	parties, purposes     set
	validFrom, validUntil string
}

type thresholds struct {
	adult, representativeOnlyUnder, assentFrom, assentTo, childOnlyFrom int
	criminal                                                            int
	criminalByCountry                                                   map[string]int
}

type allowRule struct {
	subject, record set
	child           *allowRule
	when            map[string]condition
}

type condition struct {
	path string
	in   set
}

type set map[string]bool

func setOf(list []string) set {
	s := make(set, len(list))
	for _, x := range list {
		s[x] = true
	}
	return s
}

// any says whether s holds one of list.
func (s set) any(list []string) bool {
	for _, x := range list {
		if s[x] {
			return true
		}
	}
	return false
}

type rawAllow struct {
	Subject []string  `json:"subject"`
	Record  []string  `json:"record"`
	Child   *rawAllow `json:"child"`
	When    map[string]struct {
		Path string   `json:"path"`
		In   []string `json:"in"`
	} `json:"when"`
}

func (r *rawAllow) rule() allowRule {
	a := allowRule{subject: setOf(r.Subject), record: setOf(r.Record), when: map[string]condition{}}
	if r.Child != nil {
		c := r.Child.rule()
		a.child = &c
	}
	for k, w := range r.When {
		a.when[k] = condition{path: w.Path, in: setOf(w.In)}
	}
	return a
}

// rawData is the policy data under xborder_data as it is written, before
// parseRules turns its lists into sets.
type rawData struct {
	Purposes   map[string]rawPurpose           `json:"purposes"`
	Responses  map[string]string               `json:"responses"`
	Agreements []rawAgreement                  `json:"agreements"`
	Thresholds rawThresholds                   `json:"thresholds"`
	TopLevel   []string                        `json:"top_level_fields"`
	AllowLists map[string]map[string]*rawAllow `json:"allow_lists"`
	Levels     map[string][]string             `json:"levels"`
	L4         struct {
		Purposes       []string `json:"purposes"`
		RecipientRoles []string `json:"recipient_roles"`
		NeverPurposes  []string `json:"never_purposes"`
	} `json:"l4"`
	Screening struct {
		NoChildrenPurposes     []string `json:"no_children_purposes"`
		NoChildBiometricsRoles []string `json:"no_child_biometrics_roles"`
	} `json:"screening"`
	Prosecution struct {
		Purposes           []string `json:"purposes"`
		ChildRecipientRole string   `json:"child_recipient_role"`
	} `json:"prosecution"`
	Biometrics struct {
		Purposes []string `json:"purposes"`
		Types    []string `json:"types"`
		Mode     string   `json:"mode"`
	} `json:"biometrics"`
	Consent struct {
		OverrideApproverRole string `json:"override_approver_role"`
	} `json:"consent"`
	Verification struct {
		AssertionFields map[string][]string `json:"assertion_fields"`
	} `json:"verification"`
}

type rawPurpose struct {
	Types           []string `json:"types"`
	Senders         []string `json:"senders"`
	Recipients      []string `json:"recipients"`
	ConsentRequired bool     `json:"consent_required"`
}

type rawAgreement struct {
	ID         string   `json:"id"`
	Parties    []string `json:"parties"`
	Purposes   []string `json:"purposes"`
	ValidFrom  string   `json:"valid_from"`
	ValidUntil string   `json:"valid_until"`
}

// rawThresholds holds pointers so that a threshold left out of the data
// can be told from one set to 0.
type rawThresholds struct {
	Adult                   *int `json:"adult"`
	RepresentativeOnlyUnder *int `json:"representative_only_under"`
	ChildAssentFrom         *int `json:"child_assent_from"`
	ChildAssentTo           *int `json:"child_assent_to"`
	ChildOnlyFrom           *int `json:"child_only_from"`
	CriminalResponsibility  struct {
		Default   *int           `json:"default"`
		ByCountry map[string]int `json:"by_country"`
	} `json:"criminal_responsibility"`
}

// parseRules reads the policy data. It refuses data without the purposes,
// the top-level fields or a threshold, since no rule could be judged
// without them; it names every one missing at once.
func parseRules(dataJSON []byte) (*rules, error) {
	var raw struct {
		D *rawData `json:"xborder_data"`
	}
	if err := json.Unmarshal(dataJSON, &raw); err != nil {
		return nil, fmt.Errorf("oracle: data: %w", err)
	}
	d := raw.D
	if d == nil {
		return nil, errors.New("oracle: data: no xborder_data")
	}
	r := &rules{
		purposes:  map[string]purposeRule{},
		responses: d.Responses,
		topLevel:  setOf(d.TopLevel),
		allow:     map[string]map[string]allowRule{},
		l4Paths:   setOf(d.Levels["L4"]),
		approver:  d.Consent.OverrideApproverRole,
		answers:   map[string][]string{},
	}
	if r.responses == nil {
		r.responses = map[string]string{}
	}
	for name, p := range d.Purposes {
		r.purposes[name] = purposeRule{types: setOf(p.Types), senders: setOf(p.Senders), recipients: setOf(p.Recipients), consentRequired: p.ConsentRequired}
	}
	for _, a := range d.Agreements {
		r.agreements = append(r.agreements, agreement{id: a.ID, parties: setOf(a.Parties), purposes: setOf(a.Purposes), validFrom: a.ValidFrom, validUntil: a.ValidUntil})
	}
	var missing []error
	r.thresholds, missing = d.Thresholds.read()
	if len(r.topLevel) == 0 {
		missing = append(missing, errors.New("oracle: data: no top_level_fields"))
	}
	if len(r.purposes) == 0 {
		missing = append(missing, errors.New("oracle: data: no purposes"))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	r.readAllowLists(d)
	r.readNarrowing(d)
	for a, fields := range d.Verification.AssertionFields {
		for _, f := range fields {
			r.answers[f] = append(r.answers[f], a)
		}
	}
	return r, nil
}

// read returns the thresholds, and an error for each one the data leaves
// out, in the order they are listed here.
func (t rawThresholds) read() (thresholds, []error) {
	var missing []error
	need := func(name string, p *int) int {
		if p == nil {
			missing = append(missing, fmt.Errorf("oracle: data: no thresholds.%s", name))
			return 0
		}
		return *p
	}
	th := thresholds{
		adult:                   need("adult", t.Adult),
		representativeOnlyUnder: need("representative_only_under", t.RepresentativeOnlyUnder),
		assentFrom:              need("child_assent_from", t.ChildAssentFrom),
		assentTo:                need("child_assent_to", t.ChildAssentTo),
		childOnlyFrom:           need("child_only_from", t.ChildOnlyFrom),
		criminal:                need("criminal_responsibility.default", t.CriminalResponsibility.Default),
		criminalByCountry:       t.CriminalResponsibility.ByCountry,
	}
	return th, missing
}

// readAllowLists reads the R10 allow-lists by purpose and type. A null
// list is left out, so that the purpose and type have no allow-list.
func (r *rules) readAllowLists(d *rawData) {
	for p, byType := range d.AllowLists {
		r.allow[p] = map[string]allowRule{}
		for typ, a := range byType {
			if a != nil {
				r.allow[p][typ] = a.rule()
			}
		}
	}
}

// readNarrowing reads the lists of the rules that narrow what may go: L4
// data (R8, R10), screening (R6), prosecution (R7) and biometrics (R12).
func (r *rules) readNarrowing(d *rawData) {
	r.l4.purposes = setOf(d.L4.Purposes)
	r.l4.recipientRoles = setOf(d.L4.RecipientRoles)
	r.l4.neverPurposes = setOf(d.L4.NeverPurposes)
	r.screening.noChildren = setOf(d.Screening.NoChildrenPurposes)
	r.screening.noChildBiometricsRoles = setOf(d.Screening.NoChildBiometricsRoles)
	r.prosecute.purposes = setOf(d.Prosecution.Purposes)
	r.prosecute.childRole = d.Prosecution.ChildRecipientRole
	r.biometrics.purposes = setOf(d.Biometrics.Purposes)
	r.biometrics.types = setOf(d.Biometrics.Types)
	r.biometrics.mode = d.Biometrics.Mode
}

// The members DOMAIN.md fixes and the data does not hold.
var (
	// consentMembers are the members of a consent (DOMAIN.md §5).
	consentMembers = setOf([]string{"id", "basis", "given_by", "representative_relation", "child_assent", "recipients", "purposes", "obtained_at", "expires_at", "override"})
	// overrideMembers are the members of consent.override (DOMAIN.md §5).
	overrideMembers = setOf([]string{"approved_by_role", "reason", "bia_ref"})
	// structured are the subject fields with members of their own (DOMAIN.md §4).
	structured = map[string]set{
		"names":          setOf([]string{"primary", "secondary", "original_script"}),
		"place_of_birth": setOf([]string{"country", "locality"}),
		"documents":      setOf([]string{"code", "issuing_state", "number", "expiry"}),
		"relationships":  setOf([]string{"relation", "ref"}),
		"location":       setOf([]string{"country", "facility_type"}),
		"biometrics":     setOf([]string{"modality", "template_ref", "mode", "dpia_id"}),
	}
	// valueFields hold a value or a list of values in DOMAIN.md §4, never
	// an object: content nested under them is none of theirs.
	valueFields = setOf([]string{
		"subject.ref", "subject.birth_date", "subject.birth_date_basis", "subject.age_estimate", "subject.sex", "subject.nationality_claimed",
		"record.requested_assertions", "record.outcome", "record.nationality_confirmed", "record.document_valid", "record.fields_confirmed",
		"record.decided_by", "record.service_type", "record.priority", "record.needs", "record.notes", "record.status", "record.offence_date",
	})
	// consentValues are the consent members that hold a value or a list of values.
	consentValues = setOf([]string{"id", "basis", "given_by", "representative_relation", "child_assent", "recipients", "purposes", "obtained_at", "expires_at"})
	// protocolTopLevel are the members of a message (PROTOCOL.md §2).
	protocolTopLevel = setOf([]string{"id", "type", "from", "to", "purpose", "legal_basis", "iat", "exp", "in_reply_to", "subject", "consent", "record"})
)

// ValidName is the rule for member names inside subject, record and
// consent at any depth (PROTOCOL.md §2): ^[A-Za-z0-9_-]{1,64}$.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// InvalidNames returns where msg has a member name that breaks the rule of
// PROTOCOL.md §2 under subject, record or consent, as paths whose bad
// member reads "<invalid>" (the name itself is the sender's and is not
// repeated). Such a message must be refused before the policy runs.
func InvalidNames(msg map[string]any) []string {
	var out []string
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := append(path[:len(path):len(path)], k)
				if !ValidName(k) {
					p[len(p)-1] = "<invalid>"
					out = append(out, safePath(p))
					continue
				}
				walk(e, p)
			}
		case []any:
			for _, e := range x {
				walk(e, path)
			}
		}
	}
	for _, sec := range []string{"subject", "record", "consent"} {
		walk(msg[sec], []string{sec})
	}
	return sortedUnique(out)
}

// MustRefuse says whether the gateway must refuse msg as invalid_message
// before the policy: a member name that breaks PROTOCOL.md §2 under
// subject, record or consent, or a top-level member §2 does not list.
func MustRefuse(msg map[string]any) bool {
	for k := range msg {
		if !protocolTopLevel[k] {
			return true
		}
	}
	return len(InvalidNames(msg)) > 0
}
