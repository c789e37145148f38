package main

import (
	"bytes"
	"context"
	le "encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// runStore runs `xborder store ARGS` and returns stdout and the exit code.
func runStore(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"store"}, args...), &out, &errb)
	return out.String() + errb.String(), code
}

// accepted adds messages with their deliveries and entries to the store of
// the configuration at cfgPath.
func accepted(t *testing.T, cfgPath string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gateway.OpenStore(ctx, cfg, gateway.StoreOptions{Replica: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	for _, id := range ids {
		m := &store.Message{From: "UN-UNICEF", ID: id, To: "KZ-MJ", Type: "referral", Purpose: "family-tracing",
			JWSSHA256: "x", DecisionID: "d-" + id, CreatedAt: now, Expires: now.Add(time.Hour)}
		_, err := s.Accept(ctx, m, []store.Delivery{{ID: "d-" + id, Recipient: "KZ-MJ", Envelope: []byte("jwe")}},
			audit.Entry{Kind: audit.KindAccepted, MessageID: id, From: "UN-UNICEF", To: "KZ-MJ"})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// `xborder store check` reads a sound store through and says so, and
// names the first problem of a damaged one, with exit 1.
func TestStoreCheck(t *testing.T) {
	t.Parallel()
	for _, st := range []struct{ name, store string }{{"bolt", ""}, {"redis", "redis"}} {
		t.Run(st.name, func(t *testing.T) {
			url := st.store
			if url == "redis" {
				url = redistest.Start(t)
			}
			cfgPath, dir := auditSetup(t, url)
			accepted(t, cfgPath, "m1", "m2")
			out, code := runStore(t, "check", "--config", cfgPath)
			if code != 0 || !strings.Contains(out, "messages: 2 records ok") || !strings.Contains(out, "gw-1: 5 entries") ||
				!strings.Contains(out, "no problem found") {
				t.Fatalf("check of a sound store: exit %d\n%s", code, out)
			}

			// One delivery record damaged.
			if url == "" {
				db, err := bbolt.Open(filepath.Join(dir, "data", "xborder.db"), 0o600, &bbolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				err = db.Update(func(tx *bbolt.Tx) error {
					return tx.Bucket([]byte("deliveries")).Put([]byte("KZ-MJ\x00d-m2"), []byte("\xff"))
				})
				db.Close()
				if err != nil {
					t.Fatal(err)
				}
			} else {
				o, _ := goredis.ParseURL(url)
				c := goredis.NewClient(o)
				defer c.Close()
				// A stored value is "version:value" (rediskv).
				h, k := "{xborder}:h:deliveries", "KZ-MJ\x00d-m2"
				v, err := c.HGet(context.Background(), h, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				version, _, _ := strings.Cut(v, ":")
				if err := c.HSet(context.Background(), h, k, version+":\xff").Err(); err != nil {
					t.Fatal(err)
				}
			}
			out, code = runStore(t, "check", "--config", cfgPath)
			if code != 1 || !strings.Contains(out, "PROBLEM:") || !strings.Contains(out, "KZ-MJ/d-m2") {
				t.Fatalf("check of a damaged record: exit %d\n%s", code, out)
			}
		})
	}
}

// A damaged page of the store's file: `store check` names it (exit 1) and
// `serve` ends with a clear error naming the file and what to do, not a
// panic with a stack trace.
func TestDamagedStoreFile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a crash test: damages the store file under the built binary")
	}
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if code := run([]string{"pki", "init", "--dir", pkiDir}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	dbPath := filepath.Join(dir, "data", "xborder.db")
	cfgPath := writeRedisConfig(t, dir, pkiDir, "bolt:"+dbPath, "")
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprintf("m%04d", i))
	}
	accepted(t, cfgPath, ids...)

	db, err := bbolt.Open(dbPath, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root int64
	db.View(func(tx *bbolt.Tx) error { root = int64(tx.Bucket([]byte("messages")).Root()); return nil })
	ps := int64(db.Info().PageSize)
	db.Close()
	f, err := os.OpenFile(dbPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first child of the messages bucket's root points far outside the file.
	f.WriteAt(le.LittleEndian.AppendUint64(nil, 1<<40), root*ps+16+8)
	f.Close()

	out, code := runStore(t, "check", "--config", cfgPath)
	if code != 1 || !strings.Contains(out, "PROBLEM:") || !strings.Contains(out, dbPath) {
		t.Errorf("store check: exit %d\n%s", code, out)
	}
	var stdout, stderr bytes.Buffer
	code = run([]string{"serve", "--config", cfgPath}, &stdout, &stderr)
	msg := stderr.String()
	if code == 0 || !strings.Contains(msg, dbPath) || !strings.Contains(msg, "xborder store check") ||
		strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic") {
		t.Fatalf("serve on a damaged file: exit %d\n%s", code, msg)
	}
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	t.Logf("serve: %s", lines[len(lines)-1])
}
