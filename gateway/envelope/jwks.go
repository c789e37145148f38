package envelope

import (
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// MarshalJWKS writes {"keys":[...]}: the public JWKs, each with its use and
// kid (PROTOCOL.md §5, GET /v1/jwks).
func MarshalJWKS(keys ...*PublicKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		if k == nil {
			return nil, errors.New("envelope: jwks: nil key")
		}
		if k.Use() != UseSig && k.Use() != UseEnc {
			return nil, fmt.Errorf("envelope: jwks: key %s has no use", k.KID())
		}
		set.Keys = append(set.Keys, k.jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("envelope: jwks: %w", err)
	}
	return b, nil
}

// ParseJWKS reads a JWKS of public keys. Each key gets its thumbprint as kid
// (as ParsePublicJWK); private key material, an unsupported key or an empty
// set is an error.
func ParseJWKS(data []byte) ([]*PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("envelope: jwks: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("envelope: jwks: no keys")
	}
	out := make([]*PublicKey, 0, len(set.Keys))
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("envelope: jwks: key %d is private", i)
		}
		n, err := normalise(k, false)
		if err != nil {
			return nil, fmt.Errorf("envelope: jwks: key %d: %w", i, err)
		}
		out = append(out, &PublicKey{jwk: n})
	}
	return out, nil
}
