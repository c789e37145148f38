package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/policy"
)

type scenarioOption struct {
	File, Name string
	Selected   bool
}

type node struct {
	Key      string
	Path     string
	Value    string // a scalar, as JSON
	Children []node
	List     bool
	Removed  bool
	Rule     string
	Why      string
}

type tryData struct {
	Scenarios []scenarioOption
	Input     string
	Err       string
	Decided   bool
	Decision  policy.Decision
	Version   string
	DecideErr string
	Message   []node
	Removed   int
}

func (c *Console) scenarioOptions(selected string) []scenarioOption {
	b := c.o.Policy.Current()
	names, _ := policy.ScenarioFiles(b.FS(), policy.ScenarioDir)
	var out []scenarioOption
	for _, n := range names {
		s, err := policy.LoadScenario(b.FS(), n)
		if err != nil {
			continue
		}
		out = append(out, scenarioOption{File: n, Name: s.Name, Selected: n == selected})
	}
	return out
}

func (c *Console) tryForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "try", "Try a decision", "try", tryData{Scenarios: c.scenarioOptions("")})
}

func (c *Console) try(w http.ResponseWriter, r *http.Request) {
	b := c.o.Policy.Current()
	d := tryData{Version: b.Version}
	raw := strings.TrimSpace(r.PostFormValue("input"))
	file := r.PostFormValue("scenario")
	d.Scenarios = c.scenarioOptions(file)
	if raw == "" && file != "" {
		// Only a scenario of the list is read: any other name (a file of
		// the policy folder that is not a scenario, a path) is refused
		// before anything is opened, so that nothing of it reaches the page.
		listed := false
		for _, s := range d.Scenarios {
			listed = listed || s.File == file
		}
		var data []byte
		err := fs.ErrNotExist
		if listed {
			data, err = fs.ReadFile(b.FS(), file)
		}
		if err != nil {
			d.Err = "No such scenario."
		} else {
			raw = string(data)
		}
	}
	d.Input = raw
	status := http.StatusOK
	if d.Err == "" {
		if raw == "" {
			d.Err = "Pick a scenario or paste an input."
		} else if in, err := policy.ParseInput([]byte(raw)); err != nil {
			d.Err = "This is not a decision input (DOMAIN.md §7: now, message, sender, recipient, request, consent_withdrawn) or a scenario file."
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			dec, derr := b.Decide(ctx, in)
			cancel()
			d.Decided, d.Decision = true, dec
			if derr != nil {
				d.DecideErr = derr.Error()
			}
			why := removals(dec)
			d.Message = tree(in.Message, "", why)
			d.Removed = len(dec.Redact)
		}
	}
	if d.Err != "" {
		status = http.StatusUnprocessableEntity
	}
	c.render(w, r, status, "try", "Try a decision", "try", d)
}

// removals maps each removed path to the rule and sentence that removed
// it (a reason "removed <path> …").
func removals(d policy.Decision) map[string]policy.Reason {
	out := map[string]policy.Reason{}
	for _, p := range d.Redact {
		out[p] = policy.Reason{Rule: "R10", Message: "removed"}
		for _, r := range d.Reasons {
			if strings.HasPrefix(r.Message, "removed "+p+" ") || strings.HasPrefix(r.Message, "removed "+p+":") || r.Message == "removed "+p {
				out[p] = r
				break
			}
		}
	}
	return out
}

// tree lays the message out for the template, marking the removed paths.
func tree(v map[string]any, prefix string, why map[string]policy.Reason) []node {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []node
	for _, k := range keys {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		n := node{Key: k, Path: p}
		if r, ok := why[p]; ok {
			n.Removed, n.Rule, n.Why = true, r.Rule, r.Message
		}
		switch x := v[k].(type) {
		case map[string]any:
			n.Children = tree(x, p, why)
		case []any:
			n.List = true
			for i, e := range x {
				if m, ok := e.(map[string]any); ok {
					n.Children = append(n.Children, node{Key: fmt.Sprint(i), Children: tree(m, "", nil)})
					continue
				}
				b, _ := json.Marshal(e)
				n.Children = append(n.Children, node{Key: fmt.Sprint(i), Value: string(b)})
			}
		default:
			b, _ := json.Marshal(x)
			n.Value = string(b)
		}
		out = append(out, n)
	}
	return out
}
