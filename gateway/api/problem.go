package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/exchange"
	"github.com/xborder/xborder/gateway/policy"
)

// Codes the API itself produces, beside the envelope's and the exchange's.
const (
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeRateLimited          = "rate_limited"
	CodeBadRequest           = "bad_request"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeInternal             = "internal"

	// The operator listener's (opsauth.go).
	CodeOpsTokenMissing       = "ops_token_missing"
	CodeOpsTokenInvalid       = "ops_token_invalid"
	CodeOpsTokenNotConfigured = "ops_token_not_configured"
	CodeOpsNetworkRefused     = "ops_network_refused"
)

// codes is the one table from stable code to HTTP status and title
// (PROTOCOL §3.2).
var codes = map[string]struct {
	status int
	title  string
}{
	string(envelope.CodeMalformedEnvelope):    {http.StatusBadRequest, "Malformed envelope"},
	string(envelope.CodeUnsupportedAlgorithm): {http.StatusBadRequest, "Unsupported algorithm or header"},
	string(envelope.CodeDecryptionFailed):     {http.StatusBadRequest, "Decryption failed"},
	string(envelope.CodeSignatureInvalid):     {http.StatusUnauthorized, "Signature invalid"},
	string(envelope.CodeInvalidMessage):       {http.StatusUnprocessableEntity, "Invalid message"},
	exchange.CodeIdentityMismatch:             {http.StatusForbidden, "Identity mismatch"},
	exchange.CodeUnknownParticipant:           {http.StatusForbidden, "Unknown participant"},
	exchange.CodeReplay:                       {http.StatusConflict, "Replay"},
	exchange.CodePolicyDenied:                 {http.StatusForbidden, "Denied by policy"},
	exchange.CodeUnavailable:                  {http.StatusServiceUnavailable, "Unavailable"},
	exchange.CodeNotFound:                     {http.StatusNotFound, "Not found"},
	exchange.CodeForbidden:                    {http.StatusForbidden, "Forbidden"},
	CodePayloadTooLarge:                       {http.StatusRequestEntityTooLarge, "Payload too large"},
	CodeUnsupportedMediaType:                  {http.StatusUnsupportedMediaType, "Unsupported media type"},
	CodeRateLimited:                           {http.StatusTooManyRequests, "Rate limited"},
	CodeBadRequest:                            {http.StatusBadRequest, "Bad request"},
	CodeMethodNotAllowed:                      {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeInternal:                              {http.StatusInternalServerError, "Internal error"},
	CodeOpsTokenMissing:                       {http.StatusUnauthorized, "Operator token required"},
	CodeOpsTokenInvalid:                       {http.StatusUnauthorized, "Operator token invalid"},
	CodeOpsTokenNotConfigured:                 {http.StatusForbidden, "No operator token configured"},
	CodeOpsNetworkRefused:                     {http.StatusForbidden, "Not from a loopback or private network"},
}

// Problem is an RFC 9457 problem document with the gateway's stable code.
type Problem struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Status     int             `json:"status"`
	Code       string          `json:"code"`
	Detail     string          `json:"detail,omitempty"`
	ErrorID    string          `json:"error_id"`
	DecisionID string          `json:"decision_id,omitempty"`
	Reasons    []policy.Reason `json:"reasons,omitempty"`
}

// problemOf maps any error of the pipeline to a problem and the internal
// cause to log.
func problemOf(err error) (Problem, error) {
	var p Problem
	var cause error
	var ee *envelope.Error
	var xe *exchange.Error
	switch {
	case errors.As(err, &xe):
		p.Code, p.Detail, p.DecisionID, p.Reasons = xe.Code, xe.Detail, xe.DecisionID, xe.Reasons
		cause = xe.Err
	case errors.As(err, &ee):
		p.Code, p.Detail = string(ee.Code), ee.Detail
		cause = ee.Err
	default:
		p.Code, p.Detail = CodeInternal, "the gateway failed to handle this request"
		cause = err
	}
	if _, known := codes[p.Code]; !known {
		p.Code, p.Detail = CodeInternal, "the gateway failed to handle this request"
	}
	p.Status, p.Title = codes[p.Code].status, codes[p.Code].title
	p.Type = "urn:xborder:problem:" + p.Code
	return p, cause
}

// renderError writes err as problem+json; the error id is logged with the
// code and the internal cause, never with message content.
func renderError(c *gin.Context, log *slog.Logger, err error) {
	p, cause := problemOf(err)
	writeProblem(c, log, p, cause)
}

func writeProblem(c *gin.Context, log *slog.Logger, p Problem, cause error) {
	p.ErrorID = uuid.NewString()
	if p.Title == "" {
		p.Title = codes[p.Code].title
	}
	if p.Type == "" {
		p.Type = "urn:xborder:problem:" + p.Code
	}
	attrs := []any{"error_id", p.ErrorID, "code", p.Code, "status", p.Status,
		"route", c.FullPath(), "identity", c.GetString(identityKey)}
	if p.DecisionID != "" {
		attrs = append(attrs, "decision_id", p.DecisionID)
	}
	if cause != nil {
		attrs = append(attrs, "cause", cause.Error())
	}
	if p.Status >= 500 {
		log.Error("request failed", attrs...)
	} else {
		log.Info("request refused", attrs...)
	}
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(p.Status, p)
}

func problem(code, detail string) Problem {
	return Problem{Code: code, Detail: detail, Status: codes[code].status}
}
