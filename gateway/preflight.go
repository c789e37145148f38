package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
)

// Preflight checks every input the gateway reads before New makes
// anything (development PKI, operator token, store file, verdict cache):
// the registry, the key folder, the policies, the operator token and its
// mode, the store's folder and both ports. It reports every problem at
// once, each naming its key and the path it looked at; a start that fails
// here has touched nothing.
func Preflight(cfg config.Config) error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("gateway: %s: %s", config.KeyName(key), fmt.Sprintf(format, a...)))
	}
	// In the development setup, what the demo PKI holds is made when its
	// registry is missing.
	devMakes := func(p string) bool {
		if cfg.DevPKI == "" {
			return false
		}
		if _, err := os.Stat(filepath.Join(cfg.DevPKI, pki.RegistryFile)); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
		rel, err := filepath.Rel(cfg.DevPKI, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	want := func(key, p string, dir bool) {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && devMakes(p):
		case errors.Is(err, fs.ErrNotExist):
			bad(key, "%s does not exist", abs(p))
		case err != nil:
			bad(key, "%v", err)
		case dir && !st.IsDir():
			bad(key, "%s is not a folder", abs(p))
		case !dir && st.IsDir():
			bad(key, "%s is a folder, not a file", abs(p))
		}
	}
	want("registry", cfg.Registry, false)
	want("gateway_keys", cfg.GatewayKeys, true)
	want("policies", cfg.Policies, true)
	if cfg.OpsTokenFile != "" {
		// The development setup makes a missing token (devSetup), beside
		// a PKI of its own or of an earlier version.
		if _, err := os.Stat(cfg.OpsTokenFile); cfg.DevPKI == "" || !errors.Is(err, fs.ErrNotExist) {
			want("ops_token_file", cfg.OpsTokenFile, false)
		}
		// As ssh refuses a private key others can read: the token
		// changes state (requeues) and reads the audit log.
		if st, err := os.Stat(cfg.OpsTokenFile); err == nil && !st.IsDir() && st.Mode().Perm()&0o077 != 0 {
			bad("ops_token_file", "%s is readable by others than its owner (mode %s): chmod 600 %s",
				abs(cfg.OpsTokenFile), st.Mode().Perm(), abs(cfg.OpsTokenFile))
		}
	}
	if kind, path := cfg.StoreKind(); kind == "bolt" {
		if err := storeFolder(path); err != nil {
			bad("store", "%v", err)
		}
	}
	for _, l := range []struct{ key, addr string }{{"listen", cfg.Listen}, {"ops_listen", cfg.OpsListen}} {
		if _, port, err := net.SplitHostPort(l.addr); err != nil || port == "0" {
			continue // Validate's to say, or any free port
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			bad(l.key, "%s cannot be listened on: %v", l.addr, errors.Unwrap(err))
			continue
		}
		ln.Close()
	}
	if len(errs) > 0 && cfg.DevPKI != "" {
		wd, _ := os.Getwd()
		errs = append(errs, fmt.Errorf("gateway: nothing was made. The development setup (serve without --config) reads policies/ and "+
			"certs/dev/ from the working directory (%s): run it at the repository's top, or give --config FILE, "+
			"whose relative paths are read from the file's folder", wd))
	}
	return errors.Join(errs...)
}

// storeFolder checks that the embedded store's file can be opened or
// made: the file, if there, is a regular file; else its nearest existing
// folder is one this process may write in.
func storeFolder(path string) error {
	st, err := os.Stat(path)
	if err == nil {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", abs(path))
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) && filepath.Dir(dir) != dir {
			continue
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a folder", abs(dir))
		}
		if !writable(dir) {
			return fmt.Errorf("%s cannot be made: %s is not writable by this user", abs(path), abs(dir))
		}
		return nil
	}
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
