package console

import (
	"crypto/x509"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
)

// Certificates remembers the client certificates presented on the
// exchange listener (serial, holder, expiry; nothing else), so that the
// console can list those that expire soon. Bounded: the oldest seen go
// first.
type Certificates struct {
	mu   sync.Mutex
	seen map[string]CertInfo
}

// CertInfo is one certificate the console can warn about.
type CertInfo struct {
	Holder   string // participant id, or the CA's name
	What     string // "client certificate", "trust anchor", "pinned certificate"
	Serial   string
	NotAfter time.Time
	LastSeen time.Time
}

const maxCerts = 10000

// NewCertificates is an empty tracker.
func NewCertificates() *Certificates { return &Certificates{seen: map[string]CertInfo{}} }

// Wrap records the client certificate of every request, then serves it
// with next.
func (c *Certificates) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			c.Observe(r.TLS.PeerCertificates[0])
		}
		next.ServeHTTP(w, r)
	})
}

// Observe records one certificate.
func (c *Certificates) Observe(leaf *x509.Certificate) {
	key := leaf.Issuer.String() + "/" + leaf.SerialNumber.String()
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ci, ok := c.seen[key]; ok {
		if now.Sub(ci.LastSeen) > time.Minute {
			ci.LastSeen = now
			c.seen[key] = ci
		}
		return
	}
	if len(c.seen) >= maxCerts {
		var oldest string
		var at time.Time
		for k, v := range c.seen {
			if oldest == "" || v.LastSeen.Before(at) {
				oldest, at = k, v.LastSeen
			}
		}
		delete(c.seen, oldest)
	}
	c.seen[key] = CertInfo{Holder: holder(leaf), What: "client certificate", Serial: leaf.SerialNumber.Text(16),
		NotAfter: leaf.NotAfter.UTC(), LastSeen: now}
}

func holder(leaf *x509.Certificate) string {
	for _, u := range leaf.URIs {
		if s := u.String(); strings.HasPrefix(s, trust.URIPrefix) {
			return strings.TrimPrefix(s, trust.URIPrefix)
		}
	}
	return leaf.Subject.CommonName
}

// expiring lists the certificates seen, pinned or trusted that expire
// before now+within, soonest first.
func (c *Certificates) expiring(reg *trust.Registry, now time.Time, within time.Duration) []CertInfo {
	limit := now.Add(within)
	var out []CertInfo
	c.mu.Lock()
	for _, ci := range c.seen {
		if ci.NotAfter.Before(limit) {
			out = append(out, ci)
		}
	}
	c.mu.Unlock()
	if reg != nil {
		for _, a := range reg.Anchors() {
			if a.NotAfter.Before(limit) {
				out = append(out, CertInfo{Holder: a.Subject.CommonName, What: "trust anchor", Serial: a.SerialNumber.Text(16), NotAfter: a.NotAfter.UTC()})
			}
		}
		for _, p := range reg.Participants() {
			if p.TLSCert != nil && p.TLSCert.NotAfter.Before(limit) {
				out = append(out, CertInfo{Holder: p.ID, What: "pinned certificate", Serial: p.TLSCert.SerialNumber.Text(16), NotAfter: p.TLSCert.NotAfter.UTC()})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out
}

// History keeps the policy changes the engine told of since start, with
// the reason of each refusal (the audit log keeps the reason too, in the
// entry's detail).
type History struct {
	mu      sync.Mutex
	changes []Change
}

// Change is one reload.
type Change struct {
	At       time.Time
	Version  string // the version now serving, or the refused one
	Previous string
	Accepted bool
	Error    string
}

// Record is an engine OnChange hook.
func (h *History) Record(old, new *policy.Bundle, err error) {
	ch := Change{At: time.Now().UTC(), Accepted: err == nil}
	if old != nil {
		ch.Previous = old.Version
	}
	if new != nil {
		ch.Version = new.Version
	}
	if rf, ok := err.(*policy.RefusedError); ok {
		ch.Version, ch.At = rf.Version, rf.At
	}
	if err != nil {
		ch.Error = err.Error()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changes = append(h.changes, ch)
	if len(h.changes) > 200 {
		h.changes = h.changes[len(h.changes)-200:]
	}
}

func (h *History) list() []Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Change, len(h.changes))
	for i, c := range h.changes {
		out[len(out)-1-i] = c
	}
	return out
}
