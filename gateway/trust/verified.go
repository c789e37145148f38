package trust

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// verifiedCache remembers the client certificate chains a registry has
// verified, so that a connection's every request does not redo the chain's
// signature checks. A registry is immutable once built:
// a reload makes a new registry with an empty cache, so a suspension, a
// removed CA or a new pin applies to the next request. A hit is honoured only
// inside the verified chain's validity window, and only successes are kept.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[[32]byte]verifiedChain
}

type verifiedChain struct {
	id                  string
	notBefore, notAfter time.Time
}

// maxVerified bounds the cache: a registry has a handful of participants,
// each with a certificate or two; past this, chains are verified each time.
const maxVerified = 1024

// chainKey identifies a presented chain by its certificates' exact bytes.
func chainKey(certs []*x509.Certificate) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, c := range certs {
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *verifiedCache) get(key [32]byte, now time.Time) (string, bool) {
	c.mu.RLock()
	v, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || now.Before(v.notBefore) || now.After(v.notAfter) {
		return "", false
	}
	return v.id, true
}

func (c *verifiedCache) put(key [32]byte, id string, window [2]time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[[32]byte]verifiedChain{}
	}
	if len(c.m) >= maxVerified {
		return
	}
	c.m[key] = verifiedChain{id: id, notBefore: window[0], notAfter: window[1]}
}
