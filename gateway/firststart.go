package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
)

// devSetup makes, for the development setup (dev_pki set), the demo
// federation's PKI and the operator token if they are missing, and logs
// what it made: a first start creates files an operator should know about
// (private keys among them).
func devSetup(cfg config.Config, log *slog.Logger) error {
	if cfg.DevPKI == "" {
		return nil
	}
	_, err := os.Stat(filepath.Join(cfg.DevPKI, pki.RegistryFile))
	missing := errors.Is(err, fs.ErrNotExist)
	if err := pki.Ensure(cfg.DevPKI); err != nil {
		return err
	}
	if missing {
		abs, _ := filepath.Abs(cfg.DevPKI)
		log.Info("development PKI made (CA key, gateway and participant keys, registry, operator token); development only",
			"dir", abs, "registry", cfg.Registry, "gateway_keys", cfg.GatewayKeys, "ops_token", filepath.Join(abs, pki.OpsTokenFile))
	}
	if cfg.OpsTokenFile == "" {
		return nil
	}
	// A PKI made by an earlier version has no token yet.
	made, err := pki.EnsureOpsToken(cfg.OpsTokenFile)
	if err != nil {
		return err
	}
	if made {
		abs, _ := filepath.Abs(cfg.OpsTokenFile)
		log.Info("operator token made (mode 0600)", "ops_token_file", abs)
	}
	return nil
}

// opsToken reads the operator token, if one is configured (its mode was
// checked by preflight).
func opsToken(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.OpsTokenFile == "" {
		log.Warn("no ops_token_file: the operator listener refuses dead letters, audit export and subject reports")
		return nil, nil
	}
	tok, err := pki.ReadOpsToken(cfg.OpsTokenFile)
	if err != nil {
		return nil, fmt.Errorf("gateway: ops_token_file: %w", err)
	}
	return tok, nil
}

// newStoreFile reports the embedded store's file when it does not exist
// yet (serve is about to create it), "" otherwise.
func newStoreFile(cfg config.Config) string {
	kind, path := cfg.StoreKind()
	if kind != "bolt" {
		return ""
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		abs, _ := filepath.Abs(path)
		return abs
	}
	return ""
}
