package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the size of the subject key in bytes.
const KeySize = 32

// LoadKey reads a subject key file: 64 hex digits and an optional newline.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	k, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("audit: key: %s does not hold %d bytes in hex", path, KeySize)
	}
	return k, nil
}

// LoadOrCreateKey reads the subject key at path, or makes a new random one
// there (mode 0600, folder 0700) if the file does not exist. Two processes
// starting at once end up with the same key.
func LoadOrCreateKey(path string) ([]byte, error) {
	k, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	k = make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	// Write aside and link into place: the key appears whole or not at all,
	// and an existing key (another process won the race) is never replaced.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-key-*")
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(hex.EncodeToString(k) + "\n")
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("audit: key: %w", err)
		}
	} else {
		tmp.Close()
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	return LoadKey(path)
}
