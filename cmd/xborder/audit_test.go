package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// auditSetup writes a configuration with a key folder and an audit log of
// a few entries beside the store; it returns the config path and the log's
// folder.
func auditSetup(t *testing.T, store string) (cfgPath, dir string) {
	t.Helper()
	dir = t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o700)
	sign, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		t.Fatal(err)
	}
	jwk, _ := sign.MarshalJSON()
	os.WriteFile(filepath.Join(keys, "sign.jwk"), jwk, 0o600)
	jwks, _ := envelope.MarshalJWKS(sign.Public())
	os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600)
	pub, _ := sign.Public().MarshalJSON()
	os.WriteFile(filepath.Join(dir, "sign.pub.jwk"), pub, 0o600)
	subjectKey, err := audit.LoadOrCreateKey(filepath.Join(keys, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	if store == "" {
		store = "bolt:" + filepath.Join(dir, "data", "xborder.db")
	}
	cfgPath = filepath.Join(dir, "xborder.yaml")
	// No gateway answers at this ops_listen: the commands read the store
	// (--offline).
	os.WriteFile(cfgPath, []byte("gateway_keys: keys\nstore: "+store+"\nregistry: r.yaml\npolicies: p\nops_listen: "+freeAddr(t)+"\n"), 0o600)

	ctx := context.Background()
	b, err := gateway.OpenStore(ctx, config.Config{Store: store}, gateway.StoreOptions{Replica: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, err := audit.New(b, audit.Options{Replica: "gw-1", Signer: sign, SubjectKey: subjectKey})
	if err != nil {
		t.Fatal(err)
	}
	for i, ref := range []string{"ref-CANARY-1", "ref-2", "ref-CANARY-1"} {
		_, err := l.Record(ctx, audit.Entry{Kind: audit.KindDelivered, MessageID: uuid.NewString(),
			DecisionID: uuid.NewString(), From: "UN-UNICEF", To: []string{"KZ-MTSZN", "KZ-MJ", "UZ-MFA"}[i],
			Purpose: "family-tracing", Type: "referral", Categories: []string{"subject.names", "record.health"},
			SubjectHash: l.SubjectHash(ref)})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dir
}

// runAudit runs `xborder audit ARGS` and returns stdout and the exit code
// run would give.
func runAudit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	c := newAudit(&out, &out) // stderr too: which way the command went

	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	c.SilenceUsage = true
	err := c.Execute()
	var ee exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.code
	default:
		return out.String() + err.Error(), 2
	}
}

func TestAuditCommands(t *testing.T) {
	t.Parallel()
	for _, st := range []struct{ name, store string }{{"bolt", ""}, {"redis", "redis"}} {
		t.Run(st.name, func(t *testing.T) {
			store := st.store
			if store == "redis" {
				store = redistest.Start(t)
			}
			cfg, dir := auditSetup(t, store)
			export := filepath.Join(dir, "audit.jsonl")

			out, code := runAudit(t, "verify", "--config", cfg, "--offline")
			if code != 0 || !strings.Contains(out, "gw-1: 3 entries, 1 checkpoints") || !strings.Contains(out, "reading the store") {
				t.Fatalf("verify live: %d\n%s", code, out)
			}
			if out, code = runAudit(t, "export", "--config", cfg, "--offline", "--out", export); code != 0 {
				t.Fatalf("export: %d\n%s", code, out)
			}
			tests := []struct {
				name   string
				args   []string
				tamper func(string) string
				code   int
				want   string
			}{
				{"offline with the JWKS", []string{"--jwks", filepath.Join(dir, "jwks.json")}, nil, 0, "export verified"},
				{"offline with one JWK", []string{"--jwks", filepath.Join(dir, "sign.pub.jwk")}, nil, 0, "export verified"},
				{"offline with the key folder", []string{"--config", cfg, "--offline"}, nil, 0, "consistent with the live log"},
				{"an edited entry", []string{"--jwks", filepath.Join(dir, "jwks.json")},
					func(s string) string { return strings.Replace(s, `"to":"KZ-MJ"`, `"to":"KZ-GP"`, 1) },
					1, `BROKEN: audit: replica "gw-1": entry 2: hash does not match`},
				{"a deleted entry", []string{"--jwks", filepath.Join(dir, "jwks.json")},
					func(s string) string {
						l := strings.Split(s, "\n")
						return strings.Join(append(l[:1], l[2:]...), "\n")
					}, 1, "entry 2: found entry 3"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					file := export
					if tc.tamper != nil {
						b, _ := os.ReadFile(export)
						file = filepath.Join(t.TempDir(), "tampered.jsonl")
						os.WriteFile(file, []byte(tc.tamper(string(b))), 0o600)
					}
					out, code := runAudit(t, append([]string{"verify", "--file", file}, tc.args...)...)
					if code != tc.code || !strings.Contains(out, tc.want) {
						t.Fatalf("exit %d (want %d)\n%s\nwant %q", code, tc.code, out, tc.want)
					}
				})
			}

			out, code = runAudit(t, "subject", "--config", cfg, "--offline", "--ref", "ref-CANARY-1")
			if code != 0 || !strings.Contains(out, "KZ-MTSZN") || !strings.Contains(out, "UZ-MFA") ||
				strings.Contains(out, "KZ-MJ") || !strings.Contains(out, "2 entries") {
				t.Fatalf("subject: %d\n%s", code, out)
			}
			raw, _ := os.ReadFile(export)
			if strings.Contains(out+string(raw), "CANARY") {
				t.Fatal("subject reference in clear")
			}
		})
	}
}
