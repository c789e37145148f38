package envelope

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Message is a validated message (PROTOCOL.md §2).
type Message struct {
	ID         string // lower-case UUID
	Type       string
	From       string
	To         string
	Purpose    string
	LegalBasis string
	InReplyTo  string // lower-case UUID, "" when absent
	IAT        int64
	EXP        int64
	// Subject, Record and Consent are nil when absent. They are the same maps
	// as in Raw, unknown members included: a redaction of one shows in both.
	Subject map[string]any
	Record  map[string]any
	Consent map[string]any
	// Raw is the whole message as decoded (numbers as json.Number), for the
	// policy input and redaction.
	Raw map[string]any
}

// Top-level fields; anything else is refused.
var messageFields = map[string]struct{}{
	"id": {}, "type": {}, "from": {}, "to": {}, "purpose": {}, "legal_basis": {},
	"iat": {}, "exp": {}, "in_reply_to": {}, "subject": {}, "consent": {}, "record": {},
}

// Details of time-window failures.
const (
	DetailExpired     = "expired"
	DetailNotYetValid = "not_yet_valid"
)

// TypeConsentWithdrawal is the only message type without a subject.
const TypeConsentWithdrawal = "consent.withdrawal"

func invalid(field string) error { return newError(CodeInvalidMessage, field, nil) }

// ParseMessage decodes payload strictly (DecodeStrict with p's depth; any
// JSON problem is malformed_envelope) and validates the message at time now.
// A field out of its rule is invalid_message with the field's name as
// detail; a message outside its time window has detail "expired" (exp ≤ now)
// or "not_yet_valid" (iat > now + clock skew).
func ParseMessage(payload []byte, now time.Time, p Profile) (*Message, error) {
	v, err := DecodeStrict(payload, p.maxDepth())
	if err != nil {
		return nil, err
	}
	raw, ok := v.(map[string]any)
	if !ok {
		return nil, newError(CodeMalformedEnvelope, "json", errors.New("envelope: message is not a JSON object"))
	}
	if f := unknownField(raw); f != "" {
		return nil, invalid(f)
	}
	m := &Message{Raw: raw}

	if m.ID, ok = uuidField(raw, "id"); !ok {
		return nil, invalid("id")
	}
	if m.Type, ok = raw["type"].(string); !ok || !isMessageType(m.Type) {
		return nil, invalid("type")
	}
	if m.From, ok = raw["from"].(string); !ok || !IsParticipantID(m.From) {
		return nil, invalid("from")
	}
	if m.To, ok = raw["to"].(string); !ok || !IsParticipantID(m.To) {
		return nil, invalid("to")
	}
	if m.Purpose, ok = raw["purpose"].(string); !ok || !isPurpose(m.Purpose) {
		return nil, invalid("purpose")
	}
	if m.LegalBasis, ok = raw["legal_basis"].(string); !ok || strings.TrimSpace(m.LegalBasis) == "" {
		return nil, invalid("legal_basis")
	}
	if m.IAT, ok = numericDate(raw, "iat"); !ok {
		return nil, invalid("iat")
	}
	if m.EXP, ok = numericDate(raw, "exp"); !ok {
		return nil, invalid("exp")
	}
	if m.EXP <= m.IAT || m.EXP-m.IAT > int64(p.maxLifetime()/time.Second) {
		return nil, invalid("exp")
	}
	if _, present := raw["in_reply_to"]; present {
		if m.InReplyTo, ok = uuidField(raw, "in_reply_to"); !ok {
			return nil, invalid("in_reply_to")
		}
	} else if strings.HasSuffix(m.Type, ".response") {
		return nil, invalid("in_reply_to")
	}
	if s, present := raw["subject"]; present {
		if m.Subject, ok = s.(map[string]any); !ok {
			return nil, invalid("subject")
		}
		if ref, ok := m.Subject["ref"].(string); !ok || ref == "" {
			return nil, invalid("subject.ref")
		}
	} else if m.Type != TypeConsentWithdrawal {
		return nil, invalid("subject")
	}
	if r, present := raw["record"]; present {
		if m.Record, ok = r.(map[string]any); !ok {
			return nil, invalid("record")
		}
	}
	if c, present := raw["consent"]; present {
		if m.Consent, ok = c.(map[string]any); !ok {
			return nil, invalid("consent")
		}
	}

	if p.DeferTimeCheck {
		return m, nil
	}
	if err := m.CheckTime(now, p); err != nil {
		return nil, err
	}
	return m, nil
}

// CheckTime checks the message's time window (PROTOCOL §2, §6): iat within
// the clock skew of now on either side, and exp after now. A message made
// too long ago or past its exp is "expired"; one from the future is
// "not_yet_valid".
func (m *Message) CheckTime(now time.Time, p Profile) error {
	t := now.Unix()
	skew := int64(p.clockSkew() / time.Second)
	if m.IAT > t+skew {
		return invalid(DetailNotYetValid)
	}
	if m.EXP <= t || m.IAT < t-skew {
		return invalid(DetailExpired)
	}
	return nil
}

// unknownField returns the smallest top-level field name outside §2, or "".
func unknownField(raw map[string]any) string {
	first := ""
	for k := range raw {
		if _, ok := messageFields[k]; !ok && (first == "" || k < first) {
			first = k
		}
	}
	return first
}

// uuidField reads an RFC 9562 UUID in its 36-character text form (hex digits
// in either case) and returns it in lower case.
func uuidField(raw map[string]any, k string) (string, bool) {
	s, ok := raw[k].(string)
	if !ok || !IsUUID(s) {
		return "", false
	}
	return strings.ToLower(s), true
}

// IsUUID reports whether s is a UUID in the RFC 9562 text form
// (8-4-4-4-12 hex digits, either case).
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// IsParticipantID reports whether s matches ^(?:[A-Z]{2}|UN)-[A-Z0-9]{2,20}$.
func IsParticipantID(s string) bool {
	if len(s) < 5 || len(s) > 23 || s[2] != '-' {
		return false
	}
	for i := 0; i < 2; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isMessageType matches ^[a-z]+(\.[a-z]+)*$.
func isMessageType(s string) bool {
	if s == "" {
		return false
	}
	prevDot := true // no leading dot
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			prevDot = false
		case c == '.' && !prevDot:
			prevDot = true
		default:
			return false
		}
	}
	return !prevDot
}

// isPurpose matches ^[a-z][a-z-]{1,63}$.
func isPurpose(s string) bool {
	if len(s) < 2 || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// numericDate reads a non-negative integer NumericDate: a JSON number with
// no fraction and no exponent.
func numericDate(raw map[string]any, k string) (int64, bool) {
	n, ok := raw[k].(json.Number)
	if !ok {
		return 0, false
	}
	s := string(n)
	if s == "" || s[0] == '-' || strings.ContainsAny(s, ".eE") {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}
