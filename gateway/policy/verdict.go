package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A verdict remembers that a policy version passed all its Rego tests and
// scenarios under this very program, so that the next start (or a reload
// of the same files) does not run them again: a restart serves in well
// under a second instead of refusing traffic for the seconds the tests
// take. A version that changed is still tested before it serves, and so is
// every version after the program changed (another OPA, another gateway
// build): the key is the policy digest and a digest of the executable.
//
// Only passes are remembered. The folder is the operator's, beside the
// store (config policy_verdicts); whoever can write there can also write
// the store.

// Verdicts is a folder of remembered passes; the zero value (no Dir)
// remembers nothing.
type Verdicts struct {
	Dir string
}

// verdict is the content of one remembered pass.
type verdict struct {
	Version         string    `json:"version"`
	Program         string    `json:"program"`
	PassedAt        time.Time `json:"passed_at"`
	RegoPassed      int       `json:"rego_passed"`
	ScenariosPassed int       `json:"scenarios_passed"`
}

// passed reports whether version passed under this program before.
func (v Verdicts) passed(version string) bool {
	if v.Dir == "" {
		return false
	}
	prog, err := programDigest()
	if err != nil {
		return false
	}
	b, err := os.ReadFile(v.path(version, prog))
	if err != nil {
		return false
	}
	var got verdict
	if err := json.Unmarshal(b, &got); err != nil {
		return false
	}
	return got.Version == version && got.Program == prog
}

// remember records that version passed (rep) under this program.
func (v Verdicts) remember(version string, rep TestReport) error {
	if v.Dir == "" || !rep.OK() {
		return nil
	}
	prog, err := programDigest()
	if err != nil {
		return err
	}
	b, err := json.Marshal(verdict{Version: version, Program: prog, PassedAt: time.Now().UTC(),
		RegoPassed: rep.RegoPassed, ScenariosPassed: rep.ScenariosPassed})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(v.Dir, 0o700); err != nil {
		return fmt.Errorf("policy: verdicts: %w", err)
	}
	final := v.path(version, prog)
	tmp, err := os.CreateTemp(v.Dir, ".verdict-*")
	if err != nil {
		return fmt.Errorf("policy: verdicts: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("policy: verdicts: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("policy: verdicts: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("policy: verdicts: %w", err)
	}
	return nil
}

// verdictLocks holds one lock per (folder, version) in this process, so
// that gateways starting together on the same policy (replicas in one
// process, parallel tests) run its tests once: the others wait for that
// verdict instead of each testing the same files on the same cores.
var verdictLocks sync.Map // string → chan struct{} (a lock that a context can give up on)

// lock takes the (Dir, version) lock, or gives up when ctx ends. Without a
// Dir nothing is remembered, so there is nothing to wait for.
func (v Verdicts) lock(ctx context.Context, version string) (unlock func(), err error) {
	if v.Dir == "" {
		return func() {}, nil
	}
	l, _ := verdictLocks.LoadOrStore(v.Dir+"\x00"+version, make(chan struct{}, 1))
	ch := l.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("policy: waiting for the tests of %s: %w", version, ctx.Err())
	}
}

// path names the verdict of (version, program).
func (v Verdicts) path(version, prog string) string {
	h := sha256.Sum256([]byte(version + "\x00" + prog))
	return filepath.Join(v.Dir, hex.EncodeToString(h[:16])+".json")
}

var program struct {
	once   sync.Once
	digest string
	err    error
}

// programDigest is the SHA-256 of the running executable, read once.
func programDigest() (string, error) {
	program.once.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			program.err = err
			return
		}
		f, err := os.Open(exe)
		if err != nil {
			program.err = err
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			program.err = err
			return
		}
		program.digest = hex.EncodeToString(h.Sum(nil))
	})
	if program.digest == "" && program.err == nil {
		return "", errors.New("policy: no program digest")
	}
	return program.digest, program.err
}
