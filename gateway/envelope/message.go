package envelope

import (
	"encoding/json"
	"errors"
	"log/slog"
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
	// IAT and EXP are NumericDates (RFC 7519 §2: seconds since the epoch,
	// possibly fractional), compared as numbers.
	IAT float64
	EXP float64
	// Subject, Record and Consent are nil when absent. They are the same maps
	// as in Raw, unknown members included: a redaction of one shows in both.
	Subject map[string]any
	Record  map[string]any
	Consent map[string]any
	// Raw is the whole message as decoded (numbers as json.Number), for the
	// policy input and redaction.
	Raw map[string]any
}

// LogValue makes logging a message anywhere safe (STYLE 16): its ids only,
// never its content (policy.Masker gives a masked view of the content).
func (m *Message) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", m.ID), slog.String("from", m.From), slog.String("to", m.To))
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
	raw, err := decodeMessage(payload, p)
	if err != nil {
		return nil, err
	}
	m := &Message{Raw: raw}
	if err := m.readAddressing(raw); err != nil {
		return nil, err
	}
	if err := m.readLifetime(raw, p); err != nil {
		return nil, err
	}
	if err := m.readInReplyTo(raw); err != nil {
		return nil, err
	}
	if err := m.readSections(raw); err != nil {
		return nil, err
	}

	if p.DeferTimeCheck {
		return m, nil
	}
	if err := m.CheckTime(now, p); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeMessage decodes payload into a JSON object whose top-level members
// are all listed in PROTOCOL §2 and whose member names inside subject,
// record and consent are all valid.
func decodeMessage(payload []byte, p Profile) (map[string]any, error) {
	v, err := DecodeStrict(payload, p.maxDepth())
	if err != nil {
		return nil, err
	}
	raw, ok := v.(map[string]any)
	if !ok {
		return nil, newError(CodeMalformedEnvelope, "json", errors.New("envelope: message is not a JSON object"))
	}
	if unknownField(raw) {
		// The name is the sender's choice: it is never echoed (PROTOCOL §3.2).
		return nil, invalid(DetailUnlistedField)
	}
	for _, section := range [...]string{"subject", "record", "consent"} {
		if !validNames(raw[section], 1) {
			return nil, invalid(section + ": " + DetailMemberName)
		}
	}
	return raw, nil
}

// readAddressing reads id, type, from, to, purpose and legal_basis.
func (m *Message) readAddressing(raw map[string]any) error {
	var ok bool
	if m.ID, ok = uuidField(raw, "id"); !ok {
		return invalid("id")
	}
	if m.Type, ok = raw["type"].(string); !ok || !isMessageType(m.Type) {
		return invalid("type")
	}
	if m.From, ok = raw["from"].(string); !ok || !IsParticipantID(m.From) {
		return invalid("from")
	}
	if m.To, ok = raw["to"].(string); !ok || !IsParticipantID(m.To) || m.To == m.From {
		return invalid("to")
	}
	if m.Purpose, ok = raw["purpose"].(string); !ok || !isPurpose(m.Purpose) {
		return invalid("purpose")
	}
	if m.LegalBasis, ok = raw["legal_basis"].(string); !ok || strings.TrimSpace(m.LegalBasis) == "" {
		return invalid("legal_basis")
	}
	return nil
}

// readLifetime reads iat and exp: exp must come after iat, within the
// profile's longest lifetime.
func (m *Message) readLifetime(raw map[string]any, p Profile) error {
	var ok bool
	if m.IAT, ok = numericDate(raw, "iat"); !ok {
		return invalid("iat")
	}
	if m.EXP, ok = numericDate(raw, "exp"); !ok {
		return invalid("exp")
	}
	if m.EXP <= m.IAT || m.EXP-m.IAT > p.maxLifetime().Seconds() {
		return invalid("exp")
	}
	return nil
}

// readInReplyTo reads in_reply_to, which a response requires.
func (m *Message) readInReplyTo(raw map[string]any) error {
	if _, present := raw["in_reply_to"]; present {
		var ok bool
		if m.InReplyTo, ok = uuidField(raw, "in_reply_to"); !ok {
			return invalid("in_reply_to")
		}
	} else if strings.HasSuffix(m.Type, ".response") {
		return invalid("in_reply_to")
	}
	return nil
}

// readSections reads subject, record and consent, which are objects when
// present. Only a consent withdrawal goes without a subject, and a subject
// needs a ref.
func (m *Message) readSections(raw map[string]any) error {
	var ok bool
	if s, present := raw["subject"]; present {
		if m.Subject, ok = s.(map[string]any); !ok {
			return invalid("subject")
		}
		if ref, ok := m.Subject["ref"].(string); !ok || ref == "" {
			return invalid("subject.ref")
		}
	} else if m.Type != TypeConsentWithdrawal {
		return invalid("subject")
	}
	if r, present := raw["record"]; present {
		if m.Record, ok = r.(map[string]any); !ok {
			return invalid("record")
		}
	}
	if c, present := raw["consent"]; present {
		if m.Consent, ok = c.(map[string]any); !ok {
			return invalid("consent")
		}
	}
	return nil
}

// CheckTime checks the message's time window (PROTOCOL §2, §6): iat within
// the clock skew of now on either side, and exp after now. A message made
// too long ago or past its exp is "expired"; one from the future is
// "not_yet_valid".
func (m *Message) CheckTime(now time.Time, p Profile) error {
	t := seconds(now)
	skew := p.clockSkew().Seconds()
	if m.IAT > t+skew {
		return invalid(DetailNotYetValid)
	}
	if m.EXP <= t || m.IAT < t-skew {
		return invalid(DetailExpired)
	}
	return nil
}

// unknownField reports whether raw has a top-level member outside §2.
func unknownField(raw map[string]any) bool {
	for k := range raw {
		if _, ok := messageFields[k]; !ok {
			return true
		}
	}
	return false
}

// Details of invalid_message that name no field of the sender's choosing.
const (
	// DetailUnlistedField: a top-level member outside PROTOCOL §2.
	DetailUnlistedField = "an unlisted field"
	// DetailMemberName: a member name outside MemberNamePattern.
	DetailMemberName = "a member name outside " + MemberNamePattern
)

// MemberNamePattern is what every member name inside subject, record and
// consent matches, at any depth (PROTOCOL §2): a dot would make a field
// path ambiguous, and anything else could pose as another name.
const MemberNamePattern = "^[A-Za-z0-9_-]{1,64}$"

// ValidMemberName reports whether s matches MemberNamePattern.
func ValidMemberName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validNames reports whether every member name in v, at any depth (objects
// inside arrays included), is a ValidMemberName. depth guards the walk;
// DecodeStrict has bounded the nesting already.
func validNames(v any, depth int) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if !ValidMemberName(k) || !validNames(c, depth+1) {
				return false
			}
		}
	case []any:
		for _, c := range t {
			if !validNames(c, depth+1) {
				return false
			}
		}
	}
	return true
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

// numericDate reads a NumericDate (RFC 7519 §2): a non-negative JSON
// number of seconds, which may have a fraction or an exponent, below the
// year 10000.
func numericDate(raw map[string]any, k string) (float64, bool) {
	n, ok := raw[k].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(n), 64)
	if err != nil || v < 0 || v >= maxNumericDate || v != v {
		return 0, false
	}
	return v, true
}

// maxNumericDate is 10000-01-01T00:00:00Z.
const maxNumericDate = 253402300800

// seconds is t as a NumericDate.
func seconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// ExpiresAt is the message's exp as a time (sub-second part kept).
func (m *Message) ExpiresAt() time.Time {
	s := int64(m.EXP)
	return time.Unix(s, int64((m.EXP-float64(s))*1e9)).UTC()
}
