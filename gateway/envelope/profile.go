package envelope

import "time"

// Profile is the JOSE and message profile a gateway (or a recipient) accepts.
// The zero value is the mandatory profile of PROTOCOL.md: ECDH-ES+A256KW with
// A256GCM, ES256, 300 s clock skew, 3600 s maximum lifetime, JSON nesting 32.
type Profile struct {
	AllowRSAOAEP256 bool          // JWE alg RSA-OAEP-256 in addition to ECDH-ES+A256KW
	AllowEdDSA      bool          // JWS alg EdDSA in addition to ES256
	ClockSkew       time.Duration // tolerated on iat either side of now; default 300s when zero
	MaxLifetime     time.Duration // maximum exp-iat; default 3600s when zero
	MaxDepth        int           // maximum JSON nesting; default 32 when zero
	// DeferTimeCheck makes ParseMessage (and Open) skip the time window;
	// the caller MUST then call Message.CheckTime itself. The exchange does
	// so after its replay lookup, so that a byte-identical retry of an
	// accepted message gets its original answer however late it comes.
	DeferTimeCheck bool
}

// Defaults of the protocol (§2, §6).
const (
	DefaultClockSkew   = 300 * time.Second
	DefaultMaxLifetime = 3600 * time.Second
	DefaultMaxDepth    = 32
)

// Typ values of the inner JWS. TypMessage is also the cty of every JWE.
const (
	TypMessage  = "xborder+jws"
	TypReceipt  = "xborder-receipt+jws"
	TypDelivery = "xborder-delivery+jws"
)

func (p Profile) clockSkew() time.Duration {
	if p.ClockSkew <= 0 {
		return DefaultClockSkew
	}
	return p.ClockSkew
}

func (p Profile) maxLifetime() time.Duration {
	if p.MaxLifetime <= 0 {
		return DefaultMaxLifetime
	}
	return p.MaxLifetime
}

func (p Profile) maxDepth() int {
	if p.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return p.MaxDepth
}
