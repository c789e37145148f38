package impact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

// Generator makes synthetic decision inputs from the scenarios of a policy
// by mutation: every purpose of the policy data and each of its message
// types, every ordered pair of parties (half of the cases) or a pair that
// holds the purpose's roles (the other half), ages from 0 to 25 and a few
// older (full, partial and estimated dates, none), every consent case
// (none, the subject, a representative with and without the child's
// assent, a best-interests override approved by the right and by a wrong
// role, expired, naming another recipient or purpose, withdrawn) and a few
// suspended parties. The same seed gives the same inputs.
//
// It stands in for gateway/policy/synth's adversarial generator, which
// plugs in through SourceFunc once merged.
type Generator struct {
	rng      *rand.Rand
	now      time.Time
	purposes []purposeSpec
	parties  []policy.Party
	pairs    [][2]int
	bases    map[string][][]byte // message type → scenario messages (JSON)
	n        int
}

type purposeSpec struct {
	name       string
	types      []string
	senders    []string
	recipients []string
}

// Ages the generator cycles through; -1 is "unknown" (no date, no estimate).
var genAges = []int{0, 3, 5, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 25, 30, 45, 70, -1}

// Consent cases the generator cycles through.
var genConsents = []string{"none", "subject", "representative+assent", "representative-no-assent",
	"representative", "override", "override-wrong-role", "expired", "other-recipient", "other-purpose", "withdrawn"}

// AgeOf is the age in whole years a generated or scenario input's subject
// has at its input.now, by birth_date (a partial date at its latest day),
// else age_estimate; ok is false when neither is known or readable. It is
// written from DOMAIN.md R4, not from the Rego.
func AgeOf(in policy.Input) (age int, ok bool) {
	now, err := time.Parse(time.RFC3339, in.Now)
	if err != nil {
		return 0, false
	}
	subj, _ := in.Message["subject"].(map[string]any)
	if bd, _ := subj["birth_date"].(string); bd != "" {
		var born time.Time
		switch len(bd) {
		case 10:
			born, err = time.Parse("2006-01-02", bd)
		case 7:
			born, err = time.Parse("2006-01", bd)
			born = born.AddDate(0, 1, -1)
		case 4:
			born, err = time.Parse("2006", bd)
			born = born.AddDate(1, 0, -1)
		default:
			return 0, false
		}
		if err != nil {
			return 0, false
		}
		age = now.Year() - born.Year()
		if now.Month() < born.Month() || (now.Month() == born.Month() && now.Day() < born.Day()) {
			age--
		}
		return age, true
	}
	switch e := subj["age_estimate"].(type) {
	case float64:
		return int(e), true
	case json.Number:
		f, err := e.Float64()
		return int(f), err == nil
	case int:
		return e, true
	}
	return 0, false
}

// NewGenerator reads the purposes of b's data and the scenario messages of
// b's folder; parties are the registry's (at least two).
func NewGenerator(seed int64, b *policy.Bundle, parties []policy.Party, now time.Time) (*Generator, error) {
	if len(parties) < 2 {
		return nil, errors.New("impact: the generator needs at least two parties")
	}
	var data struct {
		X struct {
			Purposes map[string]struct {
				Types      []string `json:"types"`
				Senders    []string `json:"senders"`
				Recipients []string `json:"recipients"`
			} `json:"purposes"`
		} `json:"xborder_data"`
	}
	if err := json.Unmarshal(b.DataJSON(), &data); err != nil {
		return nil, fmt.Errorf("impact: policy data: %w", err)
	}
	g := &Generator{rng: rand.New(rand.NewSource(seed)), now: now.UTC().Truncate(time.Second),
		parties: parties, bases: map[string][][]byte{}}
	for name, p := range data.X.Purposes {
		g.purposes = append(g.purposes, purposeSpec{name, p.Types, p.Senders, p.Recipients})
	}
	sort.Slice(g.purposes, func(i, j int) bool { return g.purposes[i].name < g.purposes[j].name })
	if len(g.purposes) == 0 {
		return nil, errors.New("impact: the policy data has no purposes")
	}
	for i := range parties {
		for j := range parties {
			if i != j {
				g.pairs = append(g.pairs, [2]int{i, j})
			}
		}
	}
	names, err := policy.ScenarioFiles(b.FS(), policy.ScenarioDir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		s, err := policy.LoadScenario(b.FS(), n)
		if err != nil {
			continue
		}
		t, _ := s.Input.Message["type"].(string)
		raw, err := json.Marshal(s.Input.Message)
		if err != nil {
			return nil, err
		}
		g.bases[t] = append(g.bases[t], raw)
	}
	if len(g.bases) == 0 {
		return nil, errors.New("impact: no scenario messages to start from")
	}
	return g, nil
}

// Next makes the next input.
func (g *Generator) Next() Case {
	i := g.n
	g.n++
	p := g.purposes[i%len(g.purposes)]
	typ := p.types[(i/len(g.purposes))%len(p.types)]
	response := strings.HasSuffix(typ, ".response")

	// Parties: every ordered pair in turn, or a pair holding the roles.
	var s, r policy.Party
	if i%2 == 0 {
		pair := g.pairs[(i/2)%len(g.pairs)]
		s, r = g.parties[pair[0]], g.parties[pair[1]]
	} else {
		sendRoles, recvRoles := p.senders, p.recipients
		if response {
			sendRoles, recvRoles = recvRoles, sendRoles
		}
		s = g.pick(sendRoles, "")
		r = g.pick(recvRoles, s.ID)
	}
	s.Roles, r.Roles = slices.Clone(s.Roles), slices.Clone(r.Roles)
	suspended := ""
	switch g.rng.Intn(40) {
	case 0:
		s.Suspended, suspended = true, "; sender suspended"
	case 1:
		r.Suspended, suspended = true, "; recipient suspended"
	}

	msg := g.base(typ)
	msg["id"] = fmt.Sprintf("syn-%08d", i)
	msg["type"], msg["from"], msg["to"], msg["purpose"] = typ, s.ID, r.ID, p.name
	msg["iat"] = json.Number(fmt.Sprint(g.now.Unix() - 10))
	msg["exp"] = json.Number(fmt.Sprint(g.now.Unix() + 290))
	subj, _ := msg["subject"].(map[string]any)
	if subj == nil {
		subj = map[string]any{"ref": fmt.Sprintf("SYN-%d", i)}
		msg["subject"] = subj
	}
	ageLabel := g.setAge(subj, genAges[(i/7)%len(genAges)])
	if rec, _ := msg["record"].(map[string]any); rec != nil && rec["offence_date"] != nil {
		// R7 reads the age at the time of the conduct.
		off := g.now.AddDate(0, 0, -g.rng.Intn(3*365))
		rec["offence_date"] = off.Format("2006-01-02")
		ageLabel += "; offence " + off.Format("2006-01-02")
	}

	in := policy.Input{Now: g.now.Format(time.RFC3339), Message: msg, Sender: s, Recipient: r}
	consentLabel := ""
	if typ == "referral" || typ == "consent.withdrawal" {
		c := genConsents[(i/3)%len(genConsents)]
		consentLabel = "; consent " + c
		g.setConsent(msg, c, r.ID, p.name, &in)
	} else {
		delete(msg, "consent")
	}
	reqLabel := ""
	if response {
		delete(msg, "in_reply_to")
		if g.rng.Intn(10) < 7 {
			reqID := fmt.Sprintf("syn-req-%08d", i)
			msg["in_reply_to"] = reqID
			in.Request = &policy.Request{ID: reqID, Type: strings.TrimSuffix(typ, ".response") + ".request",
				From: r.ID, To: s.ID, Purpose: p.name, RequestedAssertions: []string{"identity_match", "nationality_confirmed"}}
			if typ == "referral.response" {
				in.Request.Type = "referral"
				in.Request.RequestedAssertions = nil
			}
			reqLabel = "; answers a request"
		} else {
			reqLabel = "; answers nothing"
		}
	}
	label := fmt.Sprintf("%s; %s; %s → %s; %s%s%s%s", p.name, typ, strings.Join(s.Roles, "+"),
		strings.Join(r.Roles, "+"), ageLabel, consentLabel, reqLabel, suspended)
	return Case{Input: in, Label: label}
}

// pick is a party holding one of roles (any party when none does), not
// the one named by not.
func (g *Generator) pick(roles []string, not string) policy.Party {
	var fit []policy.Party
	for _, p := range g.parties {
		if p.ID == not {
			continue
		}
		for _, r := range p.Roles {
			if slices.Contains(roles, r) {
				fit = append(fit, p)
				break
			}
		}
	}
	if len(fit) == 0 {
		for _, p := range g.parties {
			if p.ID != not {
				fit = append(fit, p)
			}
		}
	}
	return fit[g.rng.Intn(len(fit))]
}

// base is a fresh copy of a scenario message of type typ (or of any type).
func (g *Generator) base(typ string) map[string]any {
	list := g.bases[typ]
	if len(list) == 0 {
		keys := make([]string, 0, len(g.bases))
		for k := range g.bases {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		list = g.bases[keys[g.rng.Intn(len(keys))]]
	}
	raw := list[g.rng.Intn(len(list))]
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	_ = d.Decode(&m)
	return m
}

// setAge gives the subject age years (-1: unknown) in one of the forms of
// DOMAIN §4, and says which.
func (g *Generator) setAge(subj map[string]any, age int) string {
	delete(subj, "birth_date")
	delete(subj, "age_estimate")
	if age < 0 {
		subj["birth_date_basis"] = "unknown"
		return "age unknown"
	}
	switch g.rng.Intn(10) {
	case 0: // the birthday is today
		subj["birth_date"] = g.now.AddDate(-age, 0, 0).Format("2006-01-02")
		return fmt.Sprintf("age %d (birthday today)", age)
	case 1: // the birthday is tomorrow: one year younger
		if age == 0 {
			break
		}
		subj["birth_date"] = g.now.AddDate(-age, 0, 1).Format("2006-01-02")
		return fmt.Sprintf("age %d (birthday tomorrow)", age-1)
	case 2:
		subj["age_estimate"] = json.Number(fmt.Sprint(age))
		subj["birth_date_basis"] = "assessed"
		return fmt.Sprintf("age %d (estimate)", age)
	}
	born := g.now.AddDate(-age-1, 0, 2+g.rng.Intn(360))
	subj["birth_date"] = born.Format("2006-01-02")
	return fmt.Sprintf("age %d", age)
}

func (g *Generator) setConsent(msg map[string]any, c, recipient, purpose string, in *policy.Input) {
	if msg["type"] == "consent.withdrawal" {
		msg["consent"] = map[string]any{"id": fmt.Sprintf("C-SYN-%d", g.rng.Intn(1000))}
		in.ConsentWithdrawn = true
		return
	}
	consent := map[string]any{
		"id": fmt.Sprintf("C-SYN-%d", g.rng.Intn(1000)), "basis": "consent",
		"recipients": []any{recipient}, "purposes": []any{purpose},
		"obtained_at": g.now.AddDate(0, -1, 0).Format(time.RFC3339),
		"expires_at":  g.now.AddDate(0, 6, 0).Format(time.RFC3339),
	}
	switch c {
	case "none":
		delete(msg, "consent")
		return
	case "subject":
		consent["given_by"] = "subject"
	case "representative+assent":
		consent["given_by"], consent["representative_relation"], consent["child_assent"] = "representative", "mother", "yes"
	case "representative-no-assent":
		consent["given_by"], consent["representative_relation"], consent["child_assent"] = "representative", "mother", "no"
	case "representative":
		consent["given_by"], consent["representative_relation"] = "representative", "guardian"
	case "override", "override-wrong-role":
		role := "child-protection"
		if c == "override-wrong-role" {
			role = "social-services"
		}
		consent["basis"] = "best_interests_override"
		consent["override"] = map[string]any{"approved_by_role": role, "reason": "coded reason", "bia_ref": "BIA-SYN"}
	case "expired":
		consent["given_by"] = "subject"
		consent["expires_at"] = g.now.AddDate(0, 0, -1).Format(time.RFC3339)
	case "other-recipient":
		consent["given_by"] = "subject"
		consent["recipients"] = []any{"XX-OTHER"}
	case "other-purpose":
		consent["given_by"] = "subject"
		consent["purposes"] = []any{"border-screening"}
	case "withdrawn":
		consent["given_by"] = "subject"
		in.ConsentWithdrawn = true
	}
	msg["consent"] = consent
}
