package exchange

import (
	"github.com/xborder/xborder/gateway/policy"
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
