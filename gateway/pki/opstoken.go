package pki

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// OpsTokenFile is the operator token's name in the PKI folder: the bearer
// token that the operator listener's state-changing and audit endpoints
// require (config ops_token_file). Made with mode 0600 beside the keys.
const OpsTokenFile = "ops.token"

// MinOpsToken is the shortest operator token accepted, in characters.
const MinOpsToken = 32

func newOpsToken() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("pki: operator token: %w", err)
	}
	return []byte(hex.EncodeToString(b) + "\n"), nil
}

// EnsureOpsToken makes a fresh operator token at path (mode 0600, folder
// 0700) unless a file is already there; made reports whether it did.
func EnsureOpsToken(path string) (made bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("pki: operator token: %w", err)
	}
	tok, err := newOpsToken()
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("pki: operator token: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil // made meanwhile by another process
	}
	if err != nil {
		return false, fmt.Errorf("pki: operator token: %w", err)
	}
	if _, err := f.Write(tok); err != nil {
		f.Close()
		return false, fmt.Errorf("pki: operator token: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("pki: operator token: %w", err)
	}
	return true, nil
}

// ReadOpsToken reads an operator token file: its content without
// surrounding white space, at least MinOpsToken characters.
func ReadOpsToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("operator token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinOpsToken {
		return nil, fmt.Errorf("operator token: %s holds %d characters, at least %d are needed (make one: openssl rand -hex 32 > %s; chmod 600 %s)",
			path, len(tok), MinOpsToken, path, path)
	}
	for _, r := range tok {
		if r < 0x21 || r > 0x7e {
			return nil, fmt.Errorf("operator token: %s is not one line of printable ASCII (make one: openssl rand -hex 32 > %s; chmod 600 %s)", path, path, path)
		}
	}
	return []byte(tok), nil
}
