package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
)

// The commands that read or change what a gateway keeps (audit verify,
// export and subject, deadletters) ask a running gateway through its
// operator listener, with the operator token (the embedded store's file is
// locked by it). A gateway named by --ops must answer: nothing else is read
// in its place. A gateway named by --config that does not answer is read
// through its own store (the config's, never another), and the development
// default (neither flag) through the development store; each says so.
// --offline reads the store without asking a gateway. Each says on stderr
// which it used.

// opsFlags locate a gateway: its configuration, its operator listener and
// the operator token.
type opsFlags struct {
	cfgPath, ops, tokenFile string
	offline                 bool
}

func (f *opsFlags) add(c *cobra.Command, cfgUsage string) {
	c.Flags().StringVar(&f.cfgPath, "config", "", cfgUsage)
	c.Flags().StringVar(&f.ops, "ops", "", "the gateway's operator listener, e.g. http://127.0.0.1:9090 (default: http:// + the config's ops_listen)")
	c.Flags().StringVar(&f.tokenFile, "ops-token-file", "", "the operator token (default: the config's ops_token_file; development setup: certs/dev/ops.token)")
	c.Flags().BoolVar(&f.offline, "offline", false, "read the store of --config (or of the development setup) itself, for a stopped gateway; no gateway is asked")
}

// gatewayTarget is a gateway as the CLI reaches it.
type gatewayTarget struct {
	cfg       config.Config
	base      string // operator listener base URL
	tokenFile string
	stderr    io.Writer
	// explicit: --ops named the gateway's listener and no store, so none
	// is read in its place; offline: --offline asked for the store;
	// cfgPath: the --config whose own store may be read.
	explicit, offline bool
	cfgPath           string
}

// target resolves the flags against the configuration.
func (f *opsFlags) target(stderr io.Writer) (*gatewayTarget, error) {
	if f.offline && f.ops != "" {
		return nil, errors.New("--offline reads the store of --config (or of the development setup) and asks no gateway: it does not go with --ops")
	}
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		return nil, err
	}
	t := &gatewayTarget{cfg: cfg, base: strings.TrimRight(f.ops, "/"), tokenFile: f.tokenFile, stderr: stderr,
		explicit: f.ops != "", offline: f.offline, cfgPath: f.cfgPath}
	if t.base == "" {
		t.base = "http://" + dialable(cfg.OpsListen)
	}
	if t.tokenFile == "" {
		t.tokenFile = cfg.OpsTokenFile
	}
	return t, nil
}

// dialable turns a listen address into one to dial (0.0.0.0 and :: are
// this machine's loopback).
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// running reports whether a gateway's operator listener answers at base.
func (t *gatewayTarget) running(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// useGateway says which way the command goes, and says it on stderr:
// through the running gateway (true), or to the store itself (false). A
// gateway named by --ops or --config that does not answer is an error:
// nothing is read in its place.
func (t *gatewayTarget) useGateway(ctx context.Context) (bool, error) {
	switch {
	case t.offline:
		fmt.Fprintf(t.stderr, "xborder: --offline: reading the store %s directly (no gateway is asked)\n", t.cfg.Store)
		return false, nil
	case t.running(ctx):
		fmt.Fprintf(t.stderr, "xborder: using the running gateway's operator listener at %s\n", t.base)
		return true, nil
	case t.explicit:
		return false, fmt.Errorf("no gateway answers at %s; nothing was read (a gateway named by --ops is never replaced by a store): "+
			"start it, or check the address; to read a stopped gateway's store, give its --config", t.base)
	case t.cfgPath != "":
		fmt.Fprintf(t.stderr, "xborder: no gateway answers at %s; reading the store %s of %s directly (the gateway's own store)\n", t.base, t.cfg.Store, t.cfgPath)
		return false, nil
	}
	fmt.Fprintf(t.stderr, "xborder: no gateway answers at %s; reading the store %s directly (the development default: no --ops or --config given)\n", t.base, t.cfg.Store)
	return false, nil
}

// storeError explains why the store cannot be read while no gateway
// answers, and what to do.
func (t *gatewayTarget) storeError(err error) error {
	kind, target := t.cfg.StoreKind()
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("no gateway answers at %s and the store file %s is locked by another process: "+
			"if a gateway runs with another operator listener, give --ops URL (or its --config); otherwise stop the process holding the file", t.base, target)
	case kind == "bolt" && errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no gateway answers at %s and there is no store file at %s: start the gateway (xborder serve), or give its --config or --ops URL", t.base, target)
	}
	return fmt.Errorf("no gateway answers at %s, and the store %s cannot be read: %w", t.base, t.cfg.Store, err)
}

// storeMissing is the error for an embedded store file that does not
// exist (opening it would create an empty one).
func (t *gatewayTarget) storeMissing() error {
	if kind, target := t.cfg.StoreKind(); kind == "bolt" {
		if _, err := os.Stat(target); err != nil {
			return t.storeError(err)
		}
	}
	return nil
}

// call sends an authenticated request to the operator listener. A problem
// answer (4xx/5xx) is returned as an *opsProblem.
func (t *gatewayTarget) call(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	if t.tokenFile == "" {
		return nil, fmt.Errorf("the gateway at %s answers, but no operator token is given: pass --ops-token-file FILE (or ops_token_file in --config)", t.base)
	}
	tok, err := pki.ReadOpsToken(t.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("the gateway at %s answers, but its operator token cannot be read: %w", t.base, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+string(tok))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the gateway at %s: %w", t.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		p := &opsProblem{Status: resp.StatusCode, Body: b}
		_ = json.Unmarshal(b, p)
		return nil, p
	}
	return resp, nil
}

// opsProblem is a refusal by the operator listener.
type opsProblem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Body   []byte `json:"-"`
}

func (p *opsProblem) Error() string {
	hint := ""
	switch p.Code {
	case "ops_token_missing", "ops_token_invalid":
		hint = " (is --ops-token-file the gateway's ops_token_file?)"
	case "ops_token_not_configured":
		hint = " (set ops_token_file in the gateway's configuration and restart it)"
	}
	if p.Code == "" {
		return fmt.Sprintf("operator listener: HTTP %d: %s", p.Status, strings.TrimSpace(string(p.Body)))
	}
	return fmt.Sprintf("operator listener: %d %s: %s%s", p.Status, p.Code, p.Detail, hint)
}
