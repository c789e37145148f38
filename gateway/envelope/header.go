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

// splitCompact checks that s is a compact serialization of n parts and
// returns its first (protected header) part.
func splitCompact(s string, n int) (string, error) {
	if strings.Count(s, ".") != n-1 {
		return "", newError(CodeMalformedEnvelope, "compact", errors.New("envelope: wrong number of parts"))
	}
	head, _, _ := strings.Cut(s, ".")
	return head, nil
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
