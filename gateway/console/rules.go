package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/policy"
)

type purposeRow struct {
	Name            string
	Types           []string
	Senders         []string
	Recipients      []string
	ConsentRequired bool
	Retention       int
}

type agreementRow struct {
	ID         string
	Parties    []string
	Purposes   []string
	ValidFrom  string
	ValidUntil string
	State      string // active, expired, not yet
}

type allowRow struct {
	Purpose, Type   string
	Subject, Record []string
	Child           string
	When            []string
}

type historyRow struct {
	At       time.Time
	Version  string
	Accepted bool
	Why      string
	Source   string
}

type rulesData struct {
	Version    string
	Rules      []policy.RuleRef
	Modules    []string
	Purposes   []purposeRow
	Agreements []agreementRow
	Thresholds []kv
	ByCountry  []kv
	AllowLists []allowRow
	Other      []kv
	Schema     string
	History    []historyRow
	Err        string
}

type kv struct{ Key, Value string }

type policyData struct {
	X struct {
		Purposes map[string]struct {
			Types           []string `json:"types"`
			Senders         []string `json:"senders"`
			Recipients      []string `json:"recipients"`
			ConsentRequired bool     `json:"consent_required"`
		} `json:"purposes"`
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
			Criminal                struct {
				Default   int            `json:"default"`
				ByCountry map[string]int `json:"by_country"`
			} `json:"criminal_responsibility"`
		} `json:"thresholds"`
		Retention  map[string]int `json:"retention_days"`
		AllowLists map[string]map[string]struct {
			Subject []string `json:"subject"`
			Record  []string `json:"record"`
			Child   *struct {
				Subject []string `json:"subject"`
				Record  []string `json:"record"`
			} `json:"child"`
			When map[string]struct {
				Path string   `json:"path"`
				In   []string `json:"in"`
			} `json:"when"`
		} `json:"allow_lists"`
	} `json:"xborder_data"`
	Raw map[string]map[string]json.RawMessage `json:"-"`
}

func (c *Console) rules(w http.ResponseWriter, r *http.Request) {
	b := c.o.Policy.Current()
	d := rulesData{Version: b.Version, Schema: string(policy.DataSchema())}
	var err error
	if d.Rules, err = b.RuleMap(); err != nil {
		d.Err = err.Error()
	}
	for _, m := range b.Modules {
		d.Modules = append(d.Modules, m)
	}
	c.dataTables(b, &d)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	_ = c.stats.refresh(ctx, c.o.Now())
	d.History = c.history()
	c.render(w, r, http.StatusOK, "rules", "Rules in force", "rules", d)
}

func (c *Console) dataTables(b *policy.Bundle, d *rulesData) {
	raw := b.DataJSON()
	var pd policyData
	if err := json.Unmarshal(raw, &pd); err != nil {
		d.Err = "data.json could not be read: " + err.Error()
		return
	}
	x := pd.X
	for name, p := range x.Purposes {
		d.Purposes = append(d.Purposes, purposeRow{name, p.Types, p.Senders, p.Recipients, p.ConsentRequired, x.Retention[name]})
	}
	sort.Slice(d.Purposes, func(i, j int) bool { return d.Purposes[i].Name < d.Purposes[j].Name })
	today := c.o.Now().UTC().Format("2006-01-02")
	for _, a := range x.Agreements {
		state := "active"
		switch {
		case a.ValidUntil < today:
			state = "expired"
		case a.ValidFrom > today:
			state = "not yet valid"
		}
		d.Agreements = append(d.Agreements, agreementRow{a.ID, a.Parties, a.Purposes, a.ValidFrom, a.ValidUntil, state})
	}
	t := x.Thresholds
	d.Thresholds = []kv{
		{"adult (R4: a child below)", itoa(t.Adult)},
		{"a representative alone consents under (R5)", itoa(t.RepresentativeOnlyUnder)},
		{"the child's assent is recorded from … to (R5)", itoa(t.ChildAssentFrom) + " – " + itoa(t.ChildAssentTo)},
		{"the child alone consents from (R5)", itoa(t.ChildOnlyFrom)},
		{"minimum age of criminal responsibility, default (R7)", itoa(t.Criminal.Default)},
	}
	for cc, age := range t.Criminal.ByCountry {
		d.ByCountry = append(d.ByCountry, kv{cc, itoa(age)})
	}
	sort.Slice(d.ByCountry, func(i, j int) bool { return d.ByCountry[i].Key < d.ByCountry[j].Key })
	for purpose, types := range x.AllowLists {
		for typ, al := range types {
			row := allowRow{Purpose: purpose, Type: typ, Subject: al.Subject, Record: al.Record}
			if al.Child != nil {
				row.Child = "subject: " + strings.Join(al.Child.Subject, ", ") + "; record: " + strings.Join(al.Child.Record, ", ")
			}
			for field, cond := range al.When {
				row.When = append(row.When, field+" only when "+cond.Path+" is "+strings.Join(cond.In, " or "))
			}
			sort.Strings(row.When)
			d.AllowLists = append(d.AllowLists, row)
		}
	}
	sort.Slice(d.AllowLists, func(i, j int) bool {
		if d.AllowLists[i].Purpose != d.AllowLists[j].Purpose {
			return d.AllowLists[i].Purpose < d.AllowLists[j].Purpose
		}
		return d.AllowLists[i].Type < d.AllowLists[j].Type
	})
	// Every other section, as JSON, so that nothing of the data is hidden.
	var all map[string]map[string]json.RawMessage
	if json.Unmarshal(raw, &all) == nil {
		shown := map[string]bool{"purposes": true, "agreements": true, "thresholds": true, "retention_days": true, "allow_lists": true}
		for k, v := range all["xborder_data"] {
			if !shown[k] {
				d.Other = append(d.Other, kv{k, string(v)})
			}
		}
		sort.Slice(d.Other, func(i, j int) bool { return d.Other[i].Key < d.Other[j].Key })
	}
}

// history merges the audit log's policy entries (every replica, since the
// log began) with the reasons told since this process started.
func (c *Console) history() []historyRow {
	var out []historyRow
	for _, e := range c.stats.policyHistory() {
		row := historyRow{At: e.Time, Version: e.PolicyVersion, Accepted: e.Kind == audit.KindPolicyChanged,
			Why: e.Detail, Source: "audit log (" + e.Replica + ")"}
		out = append(out, row)
	}
	for _, ch := range c.o.History.list() {
		dup := false
		for i := range out {
			if out[i].Version == ch.Version && out[i].Accepted == ch.Accepted && absDur(out[i].At.Sub(ch.At)) < 5*time.Second {
				if out[i].Why == "" {
					out[i].Why = ch.Error
				}
				dup = true
			}
		}
		if !dup {
			out = append(out, historyRow{At: ch.At, Version: ch.Version, Accepted: ch.Accepted, Why: ch.Error, Source: "this gateway"})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

type moduleData struct {
	Name, Source, Version string
}

func (c *Console) module(w http.ResponseWriter, r *http.Request) {
	b := c.o.Policy.Current()
	name := r.URL.Query().Get("name")
	src, ok := b.Source(name)
	if !ok {
		c.fail(w, r, http.StatusNotFound, "No such module in the policy in force.")
		return
	}
	c.render(w, r, http.StatusOK, "module", name, "rules", moduleData{Name: name, Source: src, Version: b.Version})
}
