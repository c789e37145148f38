package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// Stable codes of the local API (README "Connecting an agency").
const (
	CodeInvalidMessage       = "invalid_message"
	CodeUnknownParticipant   = "unknown_participant"
	CodePolicyDenied         = "policy_denied"
	CodeIdempotencyConflict  = "idempotency_conflict"
	CodeInvalidIdempotency   = "invalid_idempotency_key"
	CodePayloadTooLarge      = "payload_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeUnauthorized         = "unauthorized"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeInboxNotLocal        = "inbox_not_local"
	CodeUnavailable          = "unavailable"
	CodeNotReady             = "not_ready"
	CodeBadRequest           = "bad_request"
	// The operator listener's.
	CodeOpsTokenNotConfigured = "ops_token_not_configured"
)

var titles = map[string]string{
	CodeInvalidMessage:        "Invalid message",
	CodeUnknownParticipant:    "Unknown participant",
	CodePolicyDenied:          "Denied by policy",
	CodeIdempotencyConflict:   "Idempotency-Key used with another body",
	CodeInvalidIdempotency:    "Invalid Idempotency-Key",
	CodePayloadTooLarge:       "Payload too large",
	CodeUnsupportedMediaType:  "Unsupported media type",
	CodeUnauthorized:          "Unauthorized",
	CodeNotFound:              "Not found",
	CodeMethodNotAllowed:      "Method not allowed",
	CodeInboxNotLocal:         "The local inbox is not in use",
	CodeUnavailable:           "Unavailable",
	CodeNotReady:              "Not ready",
	CodeBadRequest:            "Bad request",
	CodeOpsTokenNotConfigured: "No operator token configured",
}

// Reason is one rule's reason in a denial.
type Reason struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Problem is the local API's RFC 9457 document (the hub's shape).
type Problem struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Status     int      `json:"status"`
	Code       string   `json:"code"`
	Detail     string   `json:"detail,omitempty"`
	ErrorID    string   `json:"error_id"`
	DecisionID string   `json:"decision_id,omitempty"`
	Reasons    []Reason `json:"reasons,omitempty"`
}

func newProblem(status int, code, detail string) Problem {
	return Problem{Type: "urn:xborder:problem:" + code, Title: titles[code], Status: status, Code: code, Detail: detail}
}

// bodyLimit is the largest body the local API reads (the hub's default).
const bodyLimit = 1 << 20

// defaultLifetime is exp - iat when the caller gives no exp.
const defaultLifetime = time.Hour

// DefaultLegalBasis is the legal_basis of a message whose caller gives none.
const DefaultLegalBasis = "data-sharing agreement on file"

func (e *Edge) writeProblem(c *gin.Context, p Problem) {
	p.ErrorID = uuid.NewString()
	if p.Type == "" {
		p.Type = "urn:xborder:problem:" + p.Code
	}
	if p.Title == "" {
		p.Title = titles[p.Code]
	}
	attrs := []any{"error_id", p.ErrorID, "code", p.Code, "status", p.Status, "route", c.FullPath()}
	if p.Status >= 500 {
		e.log.Error("local request failed", attrs...)
	} else {
		e.log.Info("local request refused", attrs...)
	}
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(p.Status, p)
}

func (e *Edge) localRoutes() http.Handler {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash, r.RedirectFixedPath, r.RemoveExtraSlash = false, false, false // 404, never a redirect
	r.ContextWithFallback = true
	r.Use(gin.Recovery(), e.authenticate)
	r.POST("/v1/outbox", e.postOutbox)
	r.GET("/v1/outbox/:id", e.getOutbox)
	r.GET("/v1/inbox", e.getInbox)
	r.POST("/v1/inbox/:id/ack", e.ackInbox)
	r.NoRoute(func(c *gin.Context) { e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such path")) })
	r.NoMethod(func(c *gin.Context) {
		e.writeProblem(c, newProblem(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this path"))
	})
	return r
}

const callerKey = "caller"

// authenticate names the caller: a token's name when local tokens are
// configured (every call needs one), "local" on a loopback listener
// without them.
func (e *Edge) authenticate(c *gin.Context) {
	if len(e.local) == 0 {
		c.Set(callerKey, "local")
		return
	}
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || tok == "" {
		c.Header("WWW-Authenticate", `Bearer realm="xborder-edge"`)
		e.writeProblem(c, newProblem(http.StatusUnauthorized, CodeUnauthorized, "a bearer token is required"))
		return
	}
	for _, t := range e.local {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(t.token)) == 1 {
			c.Set(callerKey, t.name)
			return
		}
	}
	c.Header("WWW-Authenticate", `Bearer realm="xborder-edge", error="invalid_token"`)
	e.writeProblem(c, newProblem(http.StatusUnauthorized, CodeUnauthorized, "the bearer token is not valid"))
}

// The members a caller may give; from, id and iat are the edge's.
var callerFields = map[string]bool{
	"to": true, "type": true, "purpose": true, "legal_basis": true, "in_reply_to": true,
	"exp": true, "subject": true, "record": true, "consent": true,
}

// outboxAnswer is the 202 (and the idempotent repeat's 200).
type outboxAnswer struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
}

func (e *Edge) postOutbox(c *gin.Context) {
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil || mt != "application/json" {
		e.writeProblem(c, newProblem(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "the body must be application/json"))
		return
	}
	idemKey := c.GetHeader("Idempotency-Key")
	if _, given := c.Request.Header["Idempotency-Key"]; given && !validIdemKey(idemKey) {
		e.writeProblem(c, newProblem(http.StatusBadRequest, CodeInvalidIdempotency, "Idempotency-Key: 1 to 255 printable ASCII characters"))
		return
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request.Body, bodyLimit+1))
	if err != nil {
		e.writeProblem(c, newProblem(http.StatusBadRequest, CodeBadRequest, "the body could not be read"))
		return
	}
	if len(raw) > bodyLimit {
		e.writeProblem(c, newProblem(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "the body exceeds 1 MiB"))
		return
	}
	// Keys are the caller's own: two local systems never meet on one.
	storedKey := ""
	if idemKey != "" {
		storedKey = c.GetString(callerKey) + "\x00" + idemKey
	}
	// A repeat with a known Idempotency-Key is answered before the body
	// is checked again: the answer must not change because time passed.
	canon := ""
	if storedKey != "" {
		if d, ok := canonical(raw); ok {
			canon = d
			o, same, known, err := e.store.Idempotent(storedKey, canon)
			switch {
			case err != nil:
				e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot be read"))
				return
			case known && !same:
				e.writeProblem(c, newProblem(http.StatusConflict, CodeIdempotencyConflict, "this Idempotency-Key was used with another body"))
				return
			case known:
				c.Header("Cache-Control", "no-store")
				c.Header("Location", "/v1/outbox/"+o.ID)
				c.JSON(http.StatusOK, outboxAnswer{ID: o.ID, Status: o.Status, StatusURL: "/v1/outbox/" + o.ID})
				return
			}
		}
	}
	now := e.o.Now()
	msg, payload, p := e.prepare(raw, now)
	if p != nil {
		e.writeProblem(c, *p)
		return
	}
	caller := c.GetString(callerKey)
	if out := e.out.Load(); out != nil {
		allow, reasons, err := out.decide(c.Request.Context(), msg.Raw, caller)
		if err != nil || !allow {
			if err != nil {
				errID := uuid.NewString()
				e.log.Error("outbound policy failed; denying", "error_id", errID, "error", err)
				reasons = []Reason{{Rule: "outbound", Message: "the outbound policy could not decide (error " + errID + ")"}}
			}
			rules := make([]string, 0, len(reasons))
			for _, r := range reasons {
				rules = append(rules, r.Rule)
			}
			decisionID := uuid.NewString()
			if err := e.store.Record(audit.Entry{Kind: audit.KindDenied, MessageID: msg.ID, DecisionID: decisionID,
				PolicyVersion: out.version, From: msg.From, To: msg.To, Purpose: msg.Purpose, Type: msg.Type,
				Rules: rules, Detail: "outbound policy"}); err != nil {
				e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot write"))
				return
			}
			e.m.outboundDenied.Add(1)
			e.log.Info("outbound policy denied", "decision_id", decisionID, "to", msg.To, "purpose", msg.Purpose, "type", msg.Type, "rules", rules, "caller", caller)
			pd := newProblem(http.StatusForbidden, CodePolicyDenied, "the participant's outbound policy refused the message; nothing was sent")
			pd.DecisionID, pd.Reasons = decisionID, reasons
			e.writeProblem(c, pd)
			return
		}
	}
	jws, err := envelope.Sign(payload, e.me.Signing, envelope.TypMessage)
	if err != nil {
		e.log.Error("signing failed", "error", err)
		e.writeProblem(c, newProblem(http.StatusInternalServerError, CodeUnavailable, "the message could not be signed"))
		return
	}
	sum := sha256.Sum256(jws)
	o := &Outgoing{ID: msg.ID, To: msg.To, Type: msg.Type, Purpose: msg.Purpose, Status: StatusQueued,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(), Exp: msg.EXP, JWS: jws, NextAt: now.UTC()}
	if enc := e.hubEnc.Load(); enc != nil {
		// Sealed once, here: every send of it carries these bytes.
		if sealed, err := envelope.Encrypt(jws, enc); err == nil {
			o.Sealed = sealed
		}
	}
	got, fresh, err := e.store.Enqueue(o, storedKey, canon, audit.Entry{
		Kind: audit.KindQueued, MessageID: msg.ID, From: msg.From, To: msg.To, Purpose: msg.Purpose, Type: msg.Type,
		PayloadSHA256: hex.EncodeToString(sum[:]),
	})
	switch {
	case errors.Is(err, errIdemConflict):
		e.writeProblem(c, newProblem(http.StatusConflict, CodeIdempotencyConflict, "this Idempotency-Key was used with another body"))
		return
	case err != nil:
		e.log.Error("outbox write failed", "error", err)
		e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot write; nothing was queued"))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("Location", "/v1/outbox/"+got.ID)
	if !fresh {
		c.JSON(http.StatusOK, outboxAnswer{ID: got.ID, Status: got.Status, StatusURL: "/v1/outbox/" + got.ID})
		return
	}
	e.m.queued.Add(1)
	e.log.Info("message queued", "id", o.ID, "to", o.To, "purpose", o.Purpose, "type", o.Type, "caller", caller)
	select {
	case e.direct <- o:
	default:
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	c.JSON(http.StatusAccepted, outboxAnswer{ID: o.ID, Status: StatusQueued, StatusURL: "/v1/outbox/" + o.ID})
}

func validIdemKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// canonical is the digest of a body as the Idempotency-Key compares it:
// after parsing (member order and white space do not matter). A body that
// does not parse has none; prepare refuses it.
func canonical(raw []byte) (string, bool) {
	v, err := envelope.DecodeStrict(raw, 32)
	if err != nil {
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), true
}

// prepare checks the caller's body as the hub would (envelope.ParseMessage,
// the registry, the purpose catalogue) and returns the message and the
// payload that was checked, which is what will be signed.
func (e *Edge) prepare(raw []byte, now time.Time) (*envelope.Message, []byte, *Problem) {
	invalid := func(detail string) (*envelope.Message, []byte, *Problem) {
		p := newProblem(http.StatusUnprocessableEntity, CodeInvalidMessage, detail)
		return nil, nil, &p
	}
	v, err := envelope.DecodeStrict(raw, 32)
	if err != nil {
		return invalid("the body is not valid JSON (strict: no duplicate members, nesting up to 32)")
	}
	body, ok := v.(map[string]any)
	if !ok {
		return invalid("the body is not a JSON object")
	}
	for k := range body {
		switch {
		case k == "from" || k == "id" || k == "iat":
			return invalid("from, id and iat are set by the edge; leave them out")
		case !callerFields[k]:
			return invalid(envelope.DetailUnlistedField)
		}
	}
	iat := now.Unix()
	msg := make(map[string]any, len(body)+4)
	for k, val := range body {
		msg[k] = val
	}
	// Time-ordered (UUIDv7): the outbox's keys then grow at one end, so
	// that a commit rewrites the same few pages instead of one at random
	// per message. The time it carries is the iat's.
	id, err := uuid.NewV7()
	if err != nil {
		return invalid("the message id cannot be made")
	}
	msg["id"] = id.String()
	msg["from"] = e.cfg.Participant
	msg["iat"] = json.Number(strconv.FormatInt(iat, 10))
	if _, ok := msg["exp"]; !ok {
		msg["exp"] = json.Number(strconv.FormatInt(iat+int64(defaultLifetime/time.Second), 10))
	}
	if _, ok := msg["legal_basis"]; !ok {
		msg["legal_basis"] = DefaultLegalBasis
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		return invalid("the message cannot be encoded")
	}
	m, err := envelope.ParseMessage(payload, now, envelope.Profile{})
	if err != nil {
		var ee *envelope.Error
		if errors.As(err, &ee) && ee.Detail != "" {
			return invalid(ee.Detail)
		}
		return invalid("the message is not valid")
	}
	to, ok := e.registry().Participant(m.To)
	switch {
	case !ok:
		p := newProblem(http.StatusForbidden, CodeUnknownParticipant, "recipient is not in the registry")
		return nil, nil, &p
	case to.Suspended:
		p := newProblem(http.StatusForbidden, CodeUnknownParticipant, "recipient is suspended")
		return nil, nil, &p
	}
	if self, ok := e.registry().Participant(m.From); !ok || self.Suspended {
		p := newProblem(http.StatusForbidden, CodeUnknownParticipant, "sender is suspended")
		return nil, nil, &p
	}
	if !e.catalogue[m.Purpose] {
		p := newProblem(http.StatusForbidden, CodePolicyDenied, "the hub's policy would refuse it; nothing was sent")
		p.Reasons = []Reason{{Rule: "R2", Message: "message.purpose is not in the purpose catalogue"}}
		return nil, nil, &p
	}
	return m, payload, nil
}

// outboxView is GET /v1/outbox/{id}.
type outboxView struct {
	ID        string       `json:"id"`
	Status    string       `json:"status"`
	Attempts  int          `json:"attempts"`
	UpdatedAt string       `json:"updated_at"`
	Receipt   *receiptView `json:"receipt,omitempty"`
	Problem   any          `json:"problem,omitempty"`
}

type receiptView struct {
	DecisionID    string   `json:"decision_id"`
	PolicyVersion string   `json:"policy_version"`
	Redacted      []string `json:"redacted"`
	AcceptedAt    string   `json:"accepted_at"`
	JWS           string   `json:"jws"`
}

func (e *Edge) getOutbox(c *gin.Context) {
	id := strings.ToLower(c.Param("id"))
	if !envelope.IsUUID(id) {
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such message"))
		return
	}
	o, err := e.store.Outgoing(id)
	if errors.Is(err, errNotFound) {
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such message"))
		return
	}
	if err != nil {
		e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot be read"))
		return
	}
	v := outboxView{ID: o.ID, Status: o.Status, Attempts: o.Attempts, UpdatedAt: o.UpdatedAt.UTC().Format(time.RFC3339Nano), Problem: o.Problem}
	if o.Receipt != nil {
		red := o.Receipt.Redacted
		if red == nil {
			red = []string{}
		}
		v.Receipt = &receiptView{DecisionID: o.Receipt.DecisionID, PolicyVersion: o.Receipt.PolicyVersion,
			Redacted: red, AcceptedAt: o.Receipt.AcceptedAt, JWS: o.Receipt.JWS}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, v)
}

func (e *Edge) getInbox(c *gin.Context) {
	if e.cfg.Deliver != "local" {
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeInboxNotLocal, "deliveries are handed over by "+deliverKind(e.cfg.Deliver)+", not through this inbox"))
		return
	}
	max := 100
	if s := c.Query("max"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			e.writeProblem(c, newProblem(http.StatusBadRequest, CodeBadRequest, "max: an integer from 1 to 100"))
			return
		}
		max = n
	}
	list, err := e.store.LocalInbox(max)
	if err != nil {
		e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot be read"))
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, gin.H{"deliveries": list})
}

func (e *Edge) ackInbox(c *gin.Context) {
	if e.cfg.Deliver != "local" {
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeInboxNotLocal, "deliveries are handed over by "+deliverKind(e.cfg.Deliver)+", not through this inbox"))
		return
	}
	id := strings.ToLower(c.Param("id"))
	if !envelope.IsUUID(id) {
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such delivery"))
		return
	}
	switch err := e.store.AckLocal(id); {
	case errors.Is(err, errNotFound):
		e.writeProblem(c, newProblem(http.StatusNotFound, CodeNotFound, "no such delivery (or acknowledged before)"))
		return
	case err != nil:
		e.writeProblem(c, newProblem(http.StatusServiceUnavailable, CodeUnavailable, "the edge's store cannot write"))
		return
	}
	e.log.Info("local delivery acknowledged", "delivery_id", id)
	c.Status(http.StatusNoContent)
}
