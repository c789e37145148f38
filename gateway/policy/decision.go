// Package policy embeds OPA and answers the one question the gateway asks:
// may this message go, and what must be removed first (DOMAIN.md §7).
package policy

// Party is what the registry says of a participant (DOMAIN.md §7 input).
type Party struct {
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Country   string   `json:"country,omitempty"`
	Roles     []string `json:"roles"`
	Suspended bool     `json:"suspended"`
}

// Request is the metadata of the accepted request a response answers.
type Request struct {
	ID                  string   `json:"id"`
	Type                string   `json:"type"`
	From                string   `json:"from"`
	To                  string   `json:"to"`
	Purpose             string   `json:"purpose"`
	RequestedAssertions []string `json:"requested_assertions,omitempty"`
}

// Input is the decision input of DOMAIN.md §7.
type Input struct {
	Now              string         `json:"now"` // RFC 3339
	Message          map[string]any `json:"message"`
	Sender           Party          `json:"sender"`
	Recipient        Party          `json:"recipient"`
	Request          *Request       `json:"request,omitempty"`
	ConsentWithdrawn bool           `json:"consent_withdrawn"`
}

// Reason names a rule that denied or changed a message, with a plain sentence.
type Reason struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Obligations are always present in a decision.
type Obligations struct {
	RetentionDays int  `json:"retention_days"`
	Review        bool `json:"review"`
}

// Decision is the object the policy entrypoint returns (DOMAIN.md §7).
type Decision struct {
	Allow       bool        `json:"allow"`
	Reasons     []Reason    `json:"reasons"`
	Redact      []string    `json:"redact"`
	Obligations Obligations `json:"obligations"`
}

// Rules lists the rule ids of the reasons, in order, without repeats.
func (d Decision) Rules() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range d.Reasons {
		if !seen[r.Rule] {
			seen[r.Rule] = true
			out = append(out, r.Rule)
		}
	}
	return out
}

// Deny is the decision returned whenever the policy cannot answer (R1).
func Deny(msg string) Decision {
	return Decision{
		Allow:   false,
		Reasons: []Reason{{Rule: "R1", Message: msg}},
		Redact:  []string{},
	}
}
