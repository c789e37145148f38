package exchange

import (
	"errors"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/store"
)

// Stable error codes the exchange adds to the envelope's (PROTOCOL §3.2).
const (
	CodeIdentityMismatch   = "identity_mismatch"
	CodeUnknownParticipant = "unknown_participant"
	CodeReplay             = "replay"
	CodePolicyDenied       = "policy_denied"
	CodeUnavailable        = "unavailable"
	CodeNotFound           = "not_found"
	CodeForbidden          = "forbidden"
)

// Error is a refusal with a stable code and a detail safe to show the caller.
type Error struct {
	Code       string
	Detail     string
	DecisionID string
	Reasons    []policy.Reason
	Err        error // internal cause, logged with the error id, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "exchange: " + e.Code + ": " + e.Err.Error()
	}
	return "exchange: " + e.Code
}

func (e *Error) Unwrap() error { return e.Err }

// unavailable maps a store failure: an identifier no record can have (the
// store refuses it for its content) is the sender's invalid_message, never
// 503 (PROTOCOL §3.2: 503 only when the store cannot write).
func unavailable(err error) error {
	if errors.Is(err, store.ErrInvalidKey) {
		return &Error{Code: string(envelope.CodeInvalidMessage), Detail: "an identifier the gateway cannot keep (consent.id)", Err: err}
	}
	return &Error{Code: CodeUnavailable, Detail: "the gateway cannot store messages now; nothing was accepted", Err: err}
}
