package pki

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xborder/xborder/gateway/trust"
)

// Spec describes one participant to generate.
type Spec struct {
	ID      string
	Name    string
	Kind    string // trust.KindMemberState or trust.KindUNEntity
	Country string // empty for UN entities
	Roles   []string
	// Delivery is how deliveries reach the participant; zero means inbox.
	// An https participant's certificate also serves its push endpoint.
	Delivery trust.Delivery
}

// DemoFederation returns the demo federation of DOMAIN §8, in the order of
// its table.
func DemoFederation() []Spec {
	ms := func(id, name string, roles ...string) Spec {
		country, _, _ := strings.Cut(id, "-")
		return Spec{ID: id, Name: name, Kind: trust.KindMemberState, Country: country, Roles: roles}
	}
	un := func(id, name string, roles ...string) Spec {
		return Spec{ID: id, Name: name, Kind: trust.KindUNEntity, Roles: roles}
	}
	return []Spec{
		ms("KZ-MFA", "Ministry of Foreign Affairs, Kazakhstan", "consular"),
		ms("KZ-MVD", "Ministry of Internal Affairs, Kazakhstan", "law-enforcement", "border-management"),
		ms("KZ-MJ", "Ministry of Justice (civil registry), Kazakhstan", "civil-registry"),
		ms("KZ-GP", "General Prosecutor's Office, Kazakhstan", "prosecution"),
		ms("KZ-JC", "Juvenile court liaison, Kazakhstan", "child-justice"),
		ms("KZ-MTSZN", "Ministry of Labour and Social Protection, Kazakhstan", "social-services"),
		ms("UZ-MFA", "Ministry of Foreign Affairs, Uzbekistan", "consular"),
		ms("UZ-MVD", "Ministry of Internal Affairs, Uzbekistan", "law-enforcement", "border-management"),
		ms("TJ-MFA", "Ministry of Foreign Affairs, Tajikistan", "consular"),
		ms("IQ-MOI", "Ministry of Interior (civil status), Iraq", "civil-registry"),
		un("UN-UNICEF", "UNICEF", "child-protection", "humanitarian"),
		un("UN-IOM", "International Organization for Migration", "humanitarian"),
		un("UN-OHCHR", "Office of the High Commissioner for Human Rights", "human-rights-monitoring"),
		un("UN-UNOCT", "UN Office of Counter-Terrorism (gateway operator)", "compliance"),
	}
}

// SpecsFor returns specs for the given ids (as `pki init --participants`
// takes them): a demo federation member gets its DOMAIN §8 entry; any other
// valid id gets its id as name, the kind and country its prefix implies and
// no roles. Invalid or repeated ids are refused.
func SpecsFor(ids []string) ([]Spec, error) {
	demo := DemoFederation()
	var (
		specs []Spec
		errs  []error
		seen  = make(map[string]bool)
	)
	for _, id := range ids {
		id = strings.TrimSpace(id)
		switch {
		case !trust.ValidID(id):
			errs = append(errs, fmt.Errorf("pki: participant id %q does not match %s", id, trust.IDPattern))
			continue
		case seen[id]:
			errs = append(errs, fmt.Errorf("pki: participant id %s listed twice", id))
			continue
		}
		seen[id] = true
		if i := slices.IndexFunc(demo, func(s Spec) bool { return s.ID == id }); i >= 0 {
			specs = append(specs, demo[i])
			continue
		}
		prefix, _, _ := strings.Cut(id, "-")
		s := Spec{ID: id, Name: id, Kind: trust.KindMemberState, Country: prefix}
		if prefix == "UN" {
			s.Kind, s.Country = trust.KindUNEntity, ""
		}
		specs = append(specs, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return specs, nil
}
