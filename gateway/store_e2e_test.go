package gateway_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	bbolt "go.etcd.io/bbolt"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// Every answer is true: what a sender is told is what the store did.

// borderScreeningOfAChild is denied by R6.
func borderScreeningOfAChild() map[string]any {
	return gatewaytest.Message("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", map[string]any{
		"subject": gatewaytest.ChildSubject("CANARYSCREEN", "CANARYCHILD"),
		"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
	})
}

func readyz(t *testing.T, env *gatewaytest.Env) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(env.OpsURL() + "/readyz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitReadyz waits (at most 2 s, Ping probes once a second) for /readyz to
// answer want.
func waitReadyz(t *testing.T, env *gatewaytest.Env, want int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := readyz(t, env)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d after 2 s, want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric returns the sum of a counter's series from /metrics.
func metric(t *testing.T, env *gatewaytest.Env, name string) float64 {
	t.Helper()
	resp, err := http.Get(env.OpsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}

// chainKinds counts the entries of each kind of the message on the chains.
func chainKinds(t *testing.T, b audit.Backend, messageID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	replicas, err := b.Replicas(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		err := b.Entries(ctx, r, 1, func(e audit.Entry) error {
			if e.MessageID == messageID {
				out[e.Kind]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// A denial whose audit entry cannot be committed is not answered 403: the
// sender gets 503 (nothing accepted, nothing recorded) and retries; once the
// store writes again, the same message gets its 403 and its entry.
func TestDenialNeedsItsAuditEntry(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	pkiDir, cfg := gatewaytest.Config(t, pki.DemoFederation())
	env := gatewaytest.StartWith(t, pkiDir, cfg, gateway.WithStoreFault(func(op string) error {
		if failing.Load() && op == "deny" {
			return errors.New("injected: the audit append fails")
		}
		return nil
	}))
	mvd := env.Client("KZ-MVD")
	msg := borderScreeningOfAChild()
	sealed, err := mvd.Seal(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	r, err := mvd.Post(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Problem(); r.Status != http.StatusServiceUnavailable || p.Code != "unavailable" || p.DecisionID != "" {
		t.Fatalf("denial without its entry: %d %s, want 503 unavailable without a decision", r.Status, r.Body)
	}
	failing.Store(false)
	r, err = mvd.Post(ctx, sealed)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Problem()
	if r.Status != http.StatusForbidden || p.Code != "policy_denied" || p.DecisionID == "" {
		t.Fatalf("retry: %d %s, want 403 policy_denied", r.Status, r.Body)
	}
	env.Stop()
	b, err := gateway.OpenStore(ctx, env.Config, gateway.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var denials []audit.Entry
	replicas, _ := b.Replicas(ctx)
	for _, rp := range replicas {
		_ = b.Entries(ctx, rp, 1, func(e audit.Entry) error {
			if e.Kind == audit.KindDenied && e.MessageID == msg["id"] {
				denials = append(denials, e)
			}
			return nil
		})
	}
	if len(denials) != 1 || denials[0].DecisionID != p.DecisionID {
		t.Fatalf("denial entries %+v, want one with decision %s", denials, p.DecisionID)
	}
}

// A message the store refuses for its content (a consent id with a NUL
// character, which no store key may hold) is 422 invalid_message: not 503,
// which would have the sender retry forever, and no ERROR log line.
func TestContentTheStoreRefusesIs422(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ref := referral("UN-UNICEF", "C-NUL\x00X", []string{"UN-UNICEF"})
	r, err := env.Client("KZ-MTSZN").Send(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Problem(); r.Status != http.StatusUnprocessableEntity || p.Code != "invalid_message" {
		t.Fatalf("got %d %s, want 422 invalid_message", r.Status, r.Body)
	}
	for _, line := range strings.Split(env.Logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("an ERROR log line for content the store refuses: %s", line)
		}
	}
}

// mountFull mounts a small tmpfs at dir (root only) and returns functions
// that fill it up and free it again; ok is false when it cannot mount.
func mountFull(t *testing.T, dir string) (fill, free func(), ok bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, nil, false
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Logf("cannot mount a tmpfs (%v): the store's fault hook stands in for a full disk", err)
		return nil, nil, false
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	fill = func() {
		f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := bytes.Repeat([]byte{'x'}, 64<<10)
		for {
			if _, err := f.Write(chunk); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					return
				}
				t.Fatal(err)
			}
		}
	}
	free = func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
	return fill, free, true
}

// With the disk full, /readyz says 503 within 2 s and every answer is
// true: a 202 only for a message stored, a 403 only for a denial recorded
// with its entry, else 503 unavailable with nothing recorded (bbolt rewrites
// pages it already has, so a small change may still commit on a full disk;
// with the fault hook standing in for the disk, none does). With room
// again, 200 and 202.
func TestReadyzDiskFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "disk")
	var full atomic.Bool
	fill, free, mounted := mountFull(t, dir)
	if !mounted {
		fill = func() { full.Store(true) }
		free = func() { full.Store(false) }
	}
	pkiDir, cfg := gatewaytest.Config(t, pki.DemoFederation(), func(c *config.Config) {
		c.Store = "bolt:" + filepath.Join(dir, "xborder.db")
	})
	env := gatewaytest.StartWith(t, pkiDir, cfg, gateway.WithStoreFault(func(string) error {
		if full.Load() {
			return syscall.ENOSPC
		}
		return nil
	}))
	unicef, mvd := env.Client("UN-UNICEF"), env.Client("KZ-MVD")
	if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("before: %v %v", err, r)
	}
	waitReadyz(t, env, http.StatusOK)
	if _, _, err := mvd.GatewayKeys(ctx); err != nil {
		t.Fatal(err)
	}

	fill()
	start := time.Now()
	waitReadyz(t, env, http.StatusServiceUnavailable)
	t.Logf("disk full (tmpfs %v): /readyz 503 after %v", mounted, time.Since(start).Round(time.Millisecond))
	for i, c := range []struct {
		cl  *client.Client
		msg map[string]any
	}{
		{unicef, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))},
		{mvd, borderScreeningOfAChild()},
		{unicef, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("C", "D"))},
	} {
		r, err := c.cl.Send(ctx, c.msg)
		if err != nil {
			t.Fatal(err)
		}
		id := c.msg["id"].(string)
		st, err := c.cl.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		p := r.Problem()
		switch {
		case r.Status == http.StatusAccepted && st.Status == http.StatusOK && strings.Contains(string(st.Body), `"accepted"`):
		case r.Status == http.StatusForbidden && st.Status == http.StatusOK && strings.Contains(string(st.Body), `"denied"`):
		case r.Status == http.StatusServiceUnavailable && p.Code == "unavailable" && p.Detail != "outcome_unknown" &&
			st.Status == http.StatusNotFound:
			if mounted {
				t.Logf("send %d with the disk full: 503, nothing recorded", i)
			}
		default:
			t.Errorf("send %d with the disk full: answered %d %s, the store holds %d %s", i, r.Status, r.Body, st.Status, st.Body)
		}
		if !mounted && r.Status != http.StatusServiceUnavailable {
			t.Errorf("send %d: %d with every write failing, want 503", i, r.Status)
		}
	}

	free()
	waitReadyz(t, env, http.StatusOK)
	if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("after: %v %d %s", err, r.Status, r.Body)
	}
	if r, _ := mvd.Send(ctx, borderScreeningOfAChild()); r.Status != http.StatusForbidden {
		t.Fatalf("denial after: %d %s", r.Status, r.Body)
	}
}

// redisGateway runs a gateway on a real redis-server, reached through a
// proxy that can lose an exchange.
func redisGateway(t *testing.T) (*gatewaytest.Env, *redistest.Server, *redistest.Proxy) {
	t.Helper()
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	proxy := redistest.NewProxy(t, srv.Addr())
	pkiDir, cfg := gatewaytest.Config(t, pki.DemoFederation(), func(c *config.Config) {
		c.Store = proxy.URL()
		c.Replica = "gw-e2e"
	})
	return gatewaytest.StartWith(t, pkiDir, cfg), srv, proxy
}

// Redis loses its durability (CONFIG SET appendonly no): /readyz says 503
// and writes are refused with 503; once it is back, 200 and 202.
func TestReadyzDurabilityLost(t *testing.T) {
	t.Parallel()
	env, srv, _ := redisGateway(t)
	o, _ := goredis.ParseURL(srv.URL())
	admin := goredis.NewClient(o)
	defer admin.Close()
	unicef := env.Client("UN-UNICEF")
	if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("before: %v %v", err, r)
	}
	waitReadyz(t, env, http.StatusOK)

	if err := admin.ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, env, http.StatusServiceUnavailable)
	r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B")))
	if err != nil {
		t.Fatal(err)
	}
	if p := r.Problem(); r.Status != http.StatusServiceUnavailable || p.Code != "unavailable" {
		t.Fatalf("send without durability: %d %s, want 503", r.Status, r.Body)
	}

	if err := admin.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, env, http.StatusOK)
	if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("after: %v %d %s", err, r.Status, r.Body)
	}
}

// Redis is killed after it ran the accept script and before its answer
// reached the gateway: the sender gets 202 (read back) or 503
// outcome_unknown, never a plain 503 ("nothing was accepted") for a message
// that was accepted; its retry with the same bytes gets 200 and the message
// is delivered once.
func TestRedisKilledBetweenAcceptAndReply(t *testing.T) {
	t.Parallel()
	env, srv, proxy := redisGateway(t)
	unicef, mj := env.Client("UN-UNICEF"), env.Client("KZ-MJ")
	send := func(t *testing.T, kill bool) {
		msg := verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))
		sealed, err := unicef.Seal(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		// The accept script carries the message record, which begins so.
		marker := []byte(fmt.Sprintf(`{"from":"UN-UNICEF","id":"%s"`, msg["id"]))
		var then func()
		if kill {
			then = func() { srv.Kill() }
		}
		hit := proxy.CutReply(marker, then)
		r, err := unicef.Post(ctx, sealed)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-hit:
		case <-time.After(10 * time.Second):
			t.Fatal("the accept script's answer was not cut")
		}
		p := r.Problem()
		switch {
		case r.Status == http.StatusAccepted:
		case r.Status == http.StatusServiceUnavailable && p.Code == "unavailable" && p.Detail == "outcome_unknown":
			if !kill {
				t.Errorf("503 outcome_unknown with the server up: the gateway could have read it back")
			}
		default:
			t.Fatalf("answer %d %s: want 202 or 503 outcome_unknown", r.Status, r.Body)
		}
		t.Logf("answer with the reply lost (server killed: %v): %d %s", kill, r.Status, p.Detail)
		if kill {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		again, err := unicef.Post(ctx, sealed)
		if err != nil {
			t.Fatal(err)
		}
		for again.Status == http.StatusServiceUnavailable && kill {
			time.Sleep(100 * time.Millisecond) // the gateway reconnects
			if again, err = unicef.Post(ctx, sealed); err != nil {
				t.Fatal(err)
			}
		}
		if again.Status != http.StatusOK {
			t.Fatalf("retry with the same bytes: %d %s, want 200", again.Status, again.Body)
		}
		if r.Status == http.StatusAccepted && !bytes.Equal(again.Body, r.Body) {
			t.Errorf("the retry's answer differs from the 202")
		}
		ds, err := mj.Inbox(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range ds {
			if d.MessageID == msg["id"] {
				n++
			}
			if err := mj.Ack(ctx, d.DeliveryID); err != nil {
				t.Fatal(err)
			}
		}
		if n != 1 {
			t.Errorf("delivered %d times, want once", n)
		}
	}
	t.Run("server up", func(t *testing.T) { send(t, false) })
	t.Run("server killed", func(t *testing.T) { send(t, true) })
}

// A delivery record that cannot be decoded: the start-up check refuses the
// store unless serve_damaged_store asks to serve what can be read; then
// the record is quarantined, the recipient's other deliveries still reach
// it, the metrics count it, and the gateway is ready, /readyz saying the
// store is degraded.
func TestCorruptDeliveryQuarantined(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	unicef := env.Client("UN-UNICEF")
	for range 3 {
		if r, err := unicef.Send(ctx, verificationRequest("UN-UNICEF", "KZ-MJ", gatewaytest.ChildSubject("A", "B"))); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("send: %v %v", err, r)
		}
	}
	env.Stop()
	_, path := env.Config.StoreKind()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var bad string
	err = db.Update(func(tx *bbolt.Tx) error {
		d := tx.Bucket([]byte("deliveries"))
		k, _ := d.Cursor().Seek([]byte("KZ-MJ\x00"))
		_, id, _ := bytes.Cut(k, []byte{0})
		bad = string(id)
		return d.Put(k, []byte("\xffdamaged"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	if _, err := gateway.New(ctx, env.Config, nil); err == nil || !strings.Contains(err.Error(), "serve_damaged_store") {
		t.Fatalf("start on a damaged store: %v", err)
	}
	cfg := env.Config
	cfg.ServeDamagedStore = true
	env = gatewaytest.StartWith(t, env.PKI, cfg)
	ds, err := env.Client("KZ-MJ").Inbox(ctx, 10)
	if err != nil {
		t.Fatalf("inbox with a damaged record: %v", err)
	}
	if len(ds) != 2 {
		t.Fatalf("inbox: %d deliveries, want the 2 undamaged", len(ds))
	}
	for _, d := range ds {
		if d.DeliveryID == bad {
			t.Fatalf("the damaged delivery %s was offered", bad)
		}
	}
	if n := metric(t, env, "xborder_store_quarantined_total"); n != 1 {
		t.Errorf("xborder_store_quarantined_total = %v, want 1", n)
	}
	if !strings.Contains(env.Logs.String(), "KZ-MJ/"+bad) {
		t.Error("the quarantine is not logged with the record's key")
	}
	if n := metric(t, env, "xborder_store_damaged"); n != 1 {
		t.Errorf("xborder_store_damaged = %v, want 1", n)
	}
	waitReadyz(t, env, http.StatusOK)
	resp, err := http.Get(env.OpsURL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"store_check":"degraded"`) {
		t.Errorf("/readyz: %s", body)
	}
}
