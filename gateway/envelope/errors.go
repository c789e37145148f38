package envelope

import "errors"

// Code is the stable error code of PROTOCOL.md §3.2 that a failure to open an
// envelope maps to. The API layer turns it into problem+json.
type Code string

// The codes this package produces. The others of §3.2 (identity_mismatch,
// unknown_participant, replay, policy_denied, ...) are decided by callers.
const (
	CodeMalformedEnvelope    Code = "malformed_envelope"
	CodeUnsupportedAlgorithm Code = "unsupported_algorithm"
	CodeDecryptionFailed     Code = "decryption_failed"
	CodeSignatureInvalid     Code = "signature_invalid"
	CodeInvalidMessage       Code = "invalid_message"
)

// Error carries a stable code and a client-safe detail: a header or field
// name ("alg", "subject.ref") or a condition ("expired", "not_yet_valid"),
// never message content or a field's value. Err is the internal cause, for
// logs only; it may be nil.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := "envelope: " + string(e.Code)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the code of the first *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newError(code Code, detail string, cause error) *Error {
	return &Error{Code: code, Detail: detail, Err: cause}
}
