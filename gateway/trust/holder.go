package trust

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
)

// Holder keeps the registry in force and swaps it atomically on reload: a
// new registry is loaded and validated aside, and only a good one replaces
// the current one. Load, Store and Swap are those of atomic.Pointer.
//
// A request should take one snapshot (h.Load()) and use it throughout, so
// that its identity, keys and participants all come from one registry.
type Holder struct {
	atomic.Pointer[Registry]
	hooks hooks
}

// NewHolder returns a holder serving r.
func NewHolder(r *Registry) *Holder {
	h := &Holder{}
	h.Store(r)
	return h
}

// Reload loads the registry file at path and, if it is valid, makes it the
// current one. On error (a *RefusedError) the previous registry keeps
// serving. The OnChange hooks are told either way.
func (h *Holder) Reload(path string) error {
	r, err := Load(path)
	if err != nil {
		rerr := reloadError(path, err)
		h.changed(h.Load(), nil, rerr)
		return rerr
	}
	old := h.Swap(r)
	h.changed(old, r, nil)
	return nil
}

// Identify identifies a TLS client with the current registry.
func (h *Holder) Identify(state *tls.ConnectionState) (string, error) {
	r := h.Load()
	if r == nil {
		return "", errors.New("trust: no registry loaded")
	}
	return r.Identify(state)
}

// TLSConfig is Registry.TLSConfig for a reloadable registry: each handshake
// takes the client CAs of the registry current at that moment.
func (h *Holder) TLSConfig(serverCert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r := h.Load()
			if r == nil {
				return nil, errors.New("trust: no registry loaded")
			}
			return r.TLSConfig(serverCert), nil
		},
	}
}
