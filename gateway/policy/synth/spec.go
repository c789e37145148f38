// Package synth generates decision inputs (DOMAIN.md §7) for the policy:
// realistic exchanges of the federation and adversarial ones, deterministic
// for a seed. It reads only the rules' data (policies/data.json) and the
// specification, never the Rego, so that what it makes is an independent
// test of the gateway, of a compliance console's impact analysis, and of
// two policy builds that must decide alike.
package synth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/xborder/xborder/gateway/policy"
)

// Purpose is one entry of the purpose catalogue (DOMAIN.md §2, R2).
type Purpose struct {
	Name            string
	Types           []string
	Senders         []string
	Recipients      []string
	ConsentRequired bool
}

// Agreement is a data-sharing agreement (DOMAIN.md §8, R3). Dates are
// YYYY-MM-DD and count whole days.
type Agreement struct {
	ID         string
	Parties    []string
	Purposes   []string
	ValidFrom  string
	ValidUntil string
}

// Thresholds are the ages of R4, R5 and R7.
type Thresholds struct {
	Adult                   int
	RepresentativeOnlyUnder int
	ChildAssentFrom         int
	ChildAssentTo           int
	ChildOnlyFrom           int
	CriminalResponsibility  int
	CriminalByCountry       map[string]int
}

// Condition is a `when` of an allow-list: the field passes only when the
// value at Path is one of In (R10, e.g. legal_status for legal aid).
type Condition struct {
	Path string
	In   []string
}

// AllowList is the R10 allow-list of one purpose and message type; Child,
// when set, replaces it for a child (R4).
type AllowList struct {
	Subject []string
	Record  []string
	Child   *AllowList
	When    map[string]Condition
}

// Spec is what the generator takes from the policy data.
type Spec struct {
	Purposes   []Purpose                       // sorted by name
	Responses  map[string]string               // response type → request type
	Agreements []Agreement                     // in data order
	Thresholds Thresholds                      // R4, R5, R7
	AllowLists map[string]map[string]AllowList // purpose → type → fields
	Levels     map[string][]string             // L2, L3, L4 → field paths
	Assertions []string                        // assertions a verification may ask, sorted
	Answers    map[string][]string             // assertion → record fields that answer it
	Outcomes   []string                        // outcomes of a verification answer
}

type rawData struct {
	Data *struct {
		Purposes map[string]struct {
			Types           []string `json:"types"`
			Senders         []string `json:"senders"`
			Recipients      []string `json:"recipients"`
			ConsentRequired bool     `json:"consent_required"`
		} `json:"purposes"`
		Responses  map[string]string `json:"responses"`
		Agreements []struct {
			ID         string   `json:"id"`
			Parties    []string `json:"parties"`
			Purposes   []string `json:"purposes"`
			ValidFrom  string   `json:"valid_from"`
			ValidUntil string   `json:"valid_until"`
		} `json:"agreements"`
		Thresholds struct {
			Adult                   int `json:"adult"`
			RepresentativeOnlyUnder int `json:"representative_only_under"`
			ChildAssentFrom         int `json:"child_assent_from"`
			ChildAssentTo           int `json:"child_assent_to"`
			ChildOnlyFrom           int `json:"child_only_from"`
			CriminalResponsibility  struct {
				Default   int            `json:"default"`
				ByCountry map[string]int `json:"by_country"`
			} `json:"criminal_responsibility"`
		} `json:"thresholds"`
		AllowLists   map[string]map[string]rawAllow `json:"allow_lists"`
		Levels       map[string][]string            `json:"levels"`
		Verification struct {
			Outcomes        []string            `json:"outcomes"`
			AssertionFields map[string][]string `json:"assertion_fields"`
		} `json:"verification"`
	} `json:"xborder_data"`
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

func (r rawAllow) list() AllowList {
	a := AllowList{Subject: r.Subject, Record: r.Record}
	if r.Child != nil {
		c := r.Child.list()
		a.Child = &c
	}
	if len(r.When) > 0 {
		a.When = map[string]Condition{}
		for k, w := range r.When {
			a.When[k] = Condition{Path: w.Path, In: w.In}
		}
	}
	return a
}

// Load reads `xborder_data` from the policy data (policies/data.json).
func Load(dataJSON []byte) (*Spec, error) {
	var raw rawData
	if err := json.Unmarshal(dataJSON, &raw); err != nil {
		return nil, fmt.Errorf("synth: load: %w", err)
	}
	d := raw.Data
	if d == nil {
		return nil, errors.New("synth: load: no xborder_data")
	}
	if len(d.Purposes) == 0 {
		return nil, errors.New("synth: load: no purposes")
	}
	s := &Spec{
		Responses:  d.Responses,
		AllowLists: map[string]map[string]AllowList{},
		Levels:     d.Levels,
		Outcomes:   d.Verification.Outcomes,
		Answers:    d.Verification.AssertionFields,
	}
	for name, p := range d.Purposes {
		s.Purposes = append(s.Purposes, Purpose{
			Name: name, Types: p.Types, Senders: p.Senders,
			Recipients: p.Recipients, ConsentRequired: p.ConsentRequired,
		})
	}
	sort.Slice(s.Purposes, func(i, j int) bool { return s.Purposes[i].Name < s.Purposes[j].Name })
	for _, a := range d.Agreements {
		s.Agreements = append(s.Agreements, Agreement{
			ID: a.ID, Parties: a.Parties, Purposes: a.Purposes,
			ValidFrom: a.ValidFrom, ValidUntil: a.ValidUntil,
		})
	}
	t := d.Thresholds
	s.Thresholds = Thresholds{
		Adult: t.Adult, RepresentativeOnlyUnder: t.RepresentativeOnlyUnder,
		ChildAssentFrom: t.ChildAssentFrom, ChildAssentTo: t.ChildAssentTo,
		ChildOnlyFrom:          t.ChildOnlyFrom,
		CriminalResponsibility: t.CriminalResponsibility.Default,
		CriminalByCountry:      t.CriminalResponsibility.ByCountry,
	}
	if s.Thresholds.Adult == 0 {
		return nil, errors.New("synth: load: no adult threshold")
	}
	for p, byType := range d.AllowLists {
		s.AllowLists[p] = map[string]AllowList{}
		for typ, a := range byType {
			s.AllowLists[p][typ] = a.list()
		}
	}
	for a := range d.Verification.AssertionFields {
		s.Assertions = append(s.Assertions, a)
	}
	sort.Strings(s.Assertions)
	if s.Responses == nil {
		s.Responses = map[string]string{}
	}
	if len(s.Outcomes) == 0 {
		s.Outcomes = []string{"match", "no_match", "inconclusive", "refused"}
	}
	if len(s.Assertions) == 0 {
		s.Assertions = []string{"document_valid", "identity_match", "nationality_confirmed"}
		s.Answers = map[string][]string{
			"document_valid":        {"document_valid"},
			"identity_match":        {"fields_confirmed"},
			"nationality_confirmed": {"nationality_confirmed"},
		}
	}
	return s, nil
}

// Purpose returns the catalogue entry of name.
func (s *Spec) Purpose(name string) (Purpose, bool) {
	for _, p := range s.Purposes {
		if p.Name == name {
			return p, true
		}
	}
	return Purpose{}, false
}

// IsResponse says whether a message type answers a request (R15).
func (s *Spec) IsResponse(typ string) bool {
	_, ok := s.Responses[typ]
	return ok
}

// PurposeTypes lists every "purpose/type" the catalogue allows (R2).
func (s *Spec) PurposeTypes() []string {
	var out []string
	for _, p := range s.Purposes {
		for _, t := range p.Types {
			out = append(out, p.Name+"/"+t)
		}
	}
	return out
}

// roles returns the sender and recipient roles of a message of typ for p:
// a response reads the role columns in reverse (DOMAIN.md §2).
func (s *Spec) roles(p Purpose, typ string) (senders, recipients []string) {
	if s.IsResponse(typ) {
		return p.Recipients, p.Senders
	}
	return p.Senders, p.Recipients
}

// RolePairs lists every "purpose/type:sender-role→recipient-role" that the
// catalogue allows and that two distinct parties of the list can hold.
func (s *Spec) RolePairs(parties []policy.Party) []string {
	var out []string
	for _, p := range s.Purposes {
		for _, t := range p.Types {
			for _, rp := range s.pairsFor(p, t, parties) {
				out = append(out, p.Name+"/"+t+":"+rp.sRole+"→"+rp.rRole)
			}
		}
	}
	return out
}

type rolePair struct {
	sRole, rRole string
	parties      [][2]int // indices of (sender, recipient)
	active       [][2]int // those an agreement covers at Now (set by New)
	expired      [][2]int // those only an agreement outside its validity covers
}

func (s *Spec) pairsFor(p Purpose, typ string, parties []policy.Party) []rolePair {
	senders, recipients := s.roles(p, typ)
	var out []rolePair
	for _, sr := range senders {
		for _, rr := range recipients {
			rp := rolePair{sRole: sr, rRole: rr}
			for i, a := range parties {
				if !slices.Contains(a.Roles, sr) {
					continue
				}
				for j, b := range parties {
					if i != j && a.ID != b.ID && slices.Contains(b.Roles, rr) {
						rp.parties = append(rp.parties, [2]int{i, j})
					}
				}
			}
			if len(rp.parties) > 0 {
				out = append(out, rp)
			}
		}
	}
	return out
}

// Sections lists the L3 and L4 field paths of the data (DOMAIN.md §3).
func (s *Spec) Sections() []string {
	var out []string
	for _, l := range []string{"L3", "L4"} {
		out = append(out, s.Levels[l]...)
	}
	return out
}

// agreementState says whether an agreement covers both parties and the
// purpose on day (YYYY-MM-DD): "active", "expired" (covered only outside
// its validity) or "none" (R3).
func (s *Spec) agreementState(a, b, purpose, day string) string {
	state := "none"
	for _, ag := range s.Agreements {
		if !slices.Contains(ag.Parties, a) || !slices.Contains(ag.Parties, b) || !slices.Contains(ag.Purposes, purpose) {
			continue
		}
		if ag.ValidFrom <= day && day <= ag.ValidUntil {
			return "active"
		}
		state = "expired"
	}
	return state
}

// DemoFederation returns the participants of the demo federation
// (DOMAIN.md §8) as the registry describes them.
func DemoFederation() []policy.Party {
	ms := func(id, country string, roles ...string) policy.Party {
		return policy.Party{ID: id, Kind: "member-state", Country: country, Roles: roles}
	}
	un := func(id string, roles ...string) policy.Party {
		return policy.Party{ID: id, Kind: "un-entity", Roles: roles}
	}
	return []policy.Party{
		ms("KZ-MFA", "KZ", "consular"),
		ms("KZ-MVD", "KZ", "law-enforcement", "border-management"),
		ms("KZ-MJ", "KZ", "civil-registry"),
		ms("KZ-GP", "KZ", "prosecution"),
		ms("KZ-JC", "KZ", "child-justice"),
		ms("KZ-MTSZN", "KZ", "social-services"),
		ms("UZ-MFA", "UZ", "consular"),
		ms("UZ-MVD", "UZ", "law-enforcement", "border-management"),
		ms("TJ-MFA", "TJ", "consular"),
		ms("IQ-MOI", "IQ", "civil-registry"),
		un("UN-UNICEF", "child-protection", "humanitarian"),
		un("UN-IOM", "humanitarian"),
		un("UN-OHCHR", "human-rights-monitoring"),
		un("UN-UNOCT", "compliance"),
	}
}
