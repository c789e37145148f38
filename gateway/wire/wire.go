// Package wire holds the JSON bodies of PROTOCOL.md that both sides of the
// exchange read: the gateway's answer and receipt (§3.1), what a recipient
// receives (§4) and a message's status (§5). It imports nothing of the
// gateway, so that a participant's client (gateway/client) carries no
// policy engine or store.
package wire

// AnswerBody is the JSON of a 202 (or of the 200 to an identical retry),
// PROTOCOL §3.1.
type AnswerBody struct {
	ID            string   `json:"id"`
	Status        string   `json:"status"`
	DecisionID    string   `json:"decision_id"`
	PolicyVersion string   `json:"policy_version"`
	Redacted      []string `json:"redacted"`
	Receipt       string   `json:"receipt"`
}

// Receipt is the payload the gateway signs for the sender (PROTOCOL §3.1).
type Receipt struct {
	ID             string `json:"id"`
	From           string `json:"from"`
	To             string `json:"to"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
	AcceptedAt     string `json:"accepted_at"`
	DecisionID     string `json:"decision_id"`
	PolicyVersion  string `json:"policy_version"`
}

// DeliveryPayload is what the gateway signs for the recipient (PROTOCOL §4).
type DeliveryPayload struct {
	DeliveryID string         `json:"delivery_id"`
	Message    map[string]any `json:"message"`
	Provenance Provenance     `json:"provenance"`
}

// Provenance tells the recipient where the message came from and what the
// gateway did to it.
type Provenance struct {
	SenderJWSSHA256 string   `json:"sender_jws_sha256"`
	SenderKID       string   `json:"sender_kid"`
	ReceivedAt      string   `json:"received_at"`
	DecisionID      string   `json:"decision_id"`
	PolicyVersion   string   `json:"policy_version"`
	Redacted        []string `json:"redacted"`
}

// StatusBody is the answer of GET /v1/messages/{id} (PROTOCOL §5).
type StatusBody struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Attempts  int    `json:"attempts"`
	UpdatedAt string `json:"updated_at"`
}
