package envelope

import (
	"encoding/base64"
	"errors"
	"strings"
)

// headerMaxDepth bounds the nesting of a protected header (epk is the only
// nested member we accept).
const headerMaxDepth = 4

// forbiddenHeaders are members outside the profile in either header: keys or
// key references carried by the token itself, and extensions (crit, b64).
var forbiddenHeaders = [...]string{"jwk", "jku", "x5u", "x5c", "crit", "b64"}

// splitCompact checks that s is a compact serialization of exactly n
// base64url segments (RFC 7515 §2, PROTOCOL §3.2) and returns its first
// (protected header) part. Every byte is of the base64url alphabet or a
// separator: no padding, whitespace or line break anywhere (Go's decoder
// would skip CR and LF, giving one signed message many byte forms), and
// each segment is canonical (a length base64 can have, unused trailing
// bits zero), so that one message has exactly one compact form.
func splitCompact(s string, n int) (string, error) {
	if strings.Count(s, ".") != n-1 {
		return "", newError(CodeMalformedEnvelope, "compact", errors.New("envelope: wrong number of parts"))
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if !isBase64URL(s[i]) {
				return "", newError(CodeMalformedEnvelope, "base64", errors.New("envelope: a byte outside the base64url alphabet"))
			}
			continue
		}
		if !canonicalSegment(s[start:i]) {
			return "", newError(CodeMalformedEnvelope, "base64", errors.New("envelope: a segment that is not canonical unpadded base64url"))
		}
		start = i + 1
	}
	head, _, _ := strings.Cut(s, ".")
	return head, nil
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// canonicalSegment reports whether seg (base64url alphabet only) has a
// length unpadded base64 can have and zero unused bits in its last
// character, so that it is the only encoding of its bytes.
func canonicalSegment(seg string) bool {
	if len(seg) == 0 {
		return true
	}
	var unused uint
	switch len(seg) % 4 {
	case 1:
		return false
	case 2:
		unused = 4
	case 3:
		unused = 2
	default:
		return true
	}
	return base64URLValue(seg[len(seg)-1])&(1<<unused-1) == 0
}

func base64URLValue(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63
}

// protectedHeader decodes a protected header strictly (duplicate members are
// refused, unlike in go-jose, so no two readers can see different values).
func protectedHeader(seg string) (map[string]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, newError(CodeMalformedEnvelope, "base64", err)
	}
	v, err := DecodeStrict(raw, headerMaxDepth)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Detail = "header"
		}
		return nil, err
	}
	h, ok := v.(map[string]any)
	if !ok {
		return nil, newError(CodeMalformedEnvelope, "header", errors.New("envelope: header is not a JSON object"))
	}
	return h, nil
}

// checkForbidden refuses headers outside the profile.
func checkForbidden(h map[string]any) error {
	for _, k := range forbiddenHeaders {
		if _, ok := h[k]; ok {
			return newError(CodeUnsupportedAlgorithm, k, nil)
		}
	}
	return nil
}

// headerString returns a string member; ok is false when it is absent or
// not a string.
func headerString(h map[string]any, k string) (string, bool) {
	s, ok := h[k].(string)
	return s, ok
}
