package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// startRedis runs a durable redis-server (AOF always) for the test; its
// absence is a failure (.ci/run installs it).
func startRedis(t *testing.T) *redistest.Server {
	t.Helper()
	if _, err := os.Stat(redistest.Binary); err != nil {
		t.Fatalf("no %s: .ci/run installs redis-server (apt-get install -y redis-server)", redistest.Binary)
	}
	srv, err := redistest.StartServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	return srv
}

// writeRedisConfig writes an xborder.yaml on the Redis store in dir.
func writeRedisConfig(t *testing.T, dir, pkiDir, redisURL, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf("registry: %s\ngateway_keys: %s\npolicies: %s\nstore: %s\npolicy_watch: 0s\nrate_limit: 0\n%s",
		filepath.Join(pkiDir, "registry.yaml"), filepath.Join(pkiDir, "gateway"),
		filepath.Join(gatewaytest.RepoRoot(), "policies"), redisURL, extra)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "xborder.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// adultReferral is policies/scenarios/s18/s18.json (KZ-MTSZN refers an adult
// who consented for herself to UN-IOM for rehabilitation) with a fresh id,
// iat/exp around now and consent dates around now.
func adultReferral(consentID string) map[string]any {
	now := time.Now().UTC()
	return gatewaytest.Message("KZ-MTSZN", "UN-IOM", "referral", "rehabilitation-referral", map[string]any{
		"subject": map[string]any{
			"ref":                 "S-REPL-0001",
			"names":               map[string]any{"primary": "CANARYREPL", "secondary": "CANARYAIDA"},
			"birth_date":          "1994-07-03",
			"birth_date_basis":    "document",
			"sex":                 "F",
			"nationality_claimed": "KAZ",
			"documents": []any{map[string]any{
				"code": "P", "issuing_state": "KAZ", "number": "N1234567",
				"expiry": now.AddDate(1, 0, 0).Format("2006-01-02"),
			}},
			"location": map[string]any{"country": "SYR", "facility_type": "camp"},
		},
		"record": map[string]any{"service_type": "livelihood", "priority": "medium", "needs": []string{"vocational-training"}},
		"consent": map[string]any{
			"id": consentID, "basis": "consent", "given_by": "subject", "child_assent": "n/a",
			"recipients": []string{"UN-IOM"}, "purposes": []string{"rehabilitation-referral"},
			"obtained_at": now.AddDate(0, -1, 0).Format(time.RFC3339),
			"expires_at":  now.AddDate(0, 6, 0).Format(time.RFC3339),
		},
	})
}

// pushLog is what `xborder receive` printed: one JSON line per delivery.
type pushLog struct {
	mu    sync.Mutex
	lines int
	byMsg map[string]map[string]int // message id -> delivery id -> times pushed
	bad   []string
}

func (p *pushLog) scan(r *bufio.Scanner) {
	for r.Scan() {
		var d struct {
			DeliveryID string         `json:"delivery_id"`
			MessageID  string         `json:"message_id"`
			Digest     string         `json:"envelope_sha256"`
			Message    map[string]any `json:"message"`
			Provenance map[string]any `json:"provenance"`
		}
		p.mu.Lock()
		// Ids and digests only: a line with the message's content is bad.
		if err := json.Unmarshal(r.Bytes(), &d); err != nil || d.DeliveryID == "" || d.MessageID == "" ||
			len(d.Digest) != 64 || d.Provenance == nil || d.Message != nil || strings.Contains(r.Text(), "CANARY") {
			p.bad = append(p.bad, r.Text())
			p.mu.Unlock()
			continue
		}
		id := d.MessageID
		if p.byMsg[id] == nil {
			p.byMsg[id] = map[string]int{}
		}
		p.byMsg[id][d.DeliveryID]++
		p.lines++
		p.mu.Unlock()
	}
}

// missing counts the ids that were not pushed yet.
func (p *pushLog) missing(ids []string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, id := range ids {
		if len(p.byMsg[id]) == 0 {
			n++
		}
	}
	return n
}

// startReceiver runs `xborder receive` as UN-IOM and collects what it prints.
func startReceiver(t *testing.T, dir, pkiDir, addr string) *pushLog {
	t.Helper()
	out := filepath.Join(dir, "received")
	cmd := exec.Command(binary, "receive", "--as", "UN-IOM", "--pki", pkiDir, "--listen", addr, "--out", out)
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "receiver.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pushLog{byMsg: map[string]map[string]int{}}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		p.scan(sc)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-scanned
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(dir, "receiver.log"))
			t.Fatalf("receiver did not listen on %s:\n%s", addr, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two replicas on one Redis, one of them SIGKILLed in the middle of a stream
// of messages to a push recipient: every message that got a 202 (or, resent
// byte-identical to the survivor after the kill, a 200 or 202) is pushed, and
// a message is never pushed under two delivery ids.
//
// "receiver up": the recipient answers throughout, so gw1 may die between a
// push and its acknowledgement (a duplicate under the same delivery_id).
// "receiver hangs until the kill": the recipient's address accepts TCP and
// never answers until gw1 is dead, so gw1 surely dies holding leases (each
// attempt hangs for delivery_timeout); gw2 must take them over once the
// lease (2×delivery_timeout) runs out.
func TestReplicasSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis, two gateways and a receiver")
	}
	t.Run("receiver up", func(t *testing.T) { replicasSurviveSIGKILL(t, false) })
	t.Run("receiver hangs until the kill", func(t *testing.T) { replicasSurviveSIGKILL(t, true) })
}

// blackhole accepts connections on addr and never answers.
type blackhole struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	n     int
}

func startBlackhole(t *testing.T, addr string) *blackhole {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.n++
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.Close)
	return b
}

// Close stops listening and drops every connection; it returns how many
// were accepted.
func (b *blackhole) Close() {
	b.l.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

// workerLog is what a gateway's log says of its push attempts, by delivery id.
type workerLog struct {
	delivered map[string]int // delivery id -> attempts (counted by Lease) when delivered
	failed    map[string]int // delivery id -> failed attempts logged
}

func readWorkerLog(path string) workerLog {
	w := workerLog{delivered: map[string]int{}, failed: map[string]int{}}
	b, _ := os.ReadFile(path)
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l struct {
			Msg        string `json:"msg"`
			DeliveryID string `json:"delivery_id"`
			Attempts   int    `json:"attempts"`
		}
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		switch l.Msg {
		case "delivered":
			w.delivered[l.DeliveryID] = l.Attempts
		case "delivery failed; will retry":
			w.failed[l.DeliveryID]++
		}
	}
	return w
}

func replicasSurviveSIGKILL(t *testing.T, hangUntilKill bool) {
	srv := startRedis(t)
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	recvAddr := freeAddr(t)
	if code := run([]string{"pki", "init", "--dir", pkiDir, "--push", "UN-IOM=https://" + recvAddr + "/v1/deliveries"}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	var recv *pushLog
	var hole *blackhole
	if hangUntilKill {
		hole = startBlackhole(t, recvAddr)
	} else {
		recv = startReceiver(t, dir, pkiDir, recvAddr)
	}

	// delivery_timeout 2s: a delivery leased by a dead replica is offered
	// again after 4s. Attempts are plenty so that nothing is dead-lettered.
	extra := "delivery_timeout: 2s\ndelivery_backoff: 200ms\ndelivery_max_backoff: 1s\ndelivery_attempts: 50\n"
	type replica struct {
		name, api, ops, dir string
		proc                *exec.Cmd
		cl                  *client.Client
	}
	me, err := client.LoadIdentity(pkiDir, "KZ-MTSZN")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var gws []*replica
	for _, name := range []string{"gw1", "gw2"} {
		r := &replica{name: name, api: freeAddr(t), ops: freeAddr(t), dir: filepath.Join(dir, name)}
		cfg := writeRedisConfig(t, r.dir, pkiDir, srv.URL(), extra)
		r.proc = serveProcess(t, r.dir, []string{"XBORDER_LISTEN=" + r.api, "XBORDER_OPS_LISTEN=" + r.ops, "XBORDER_REPLICA=" + name}, "--config", cfg)
		r.cl = client.New("https://"+r.api, me)
		if _, _, err := r.cl.GatewayKeys(ctx); err != nil {
			t.Fatal(err)
		}
		gws = append(gws, r)
	}
	gw1, gw2 := gws[0], gws[1]

	const total, killAfter, senders = 300, 100, 6
	var (
		mu         sync.Mutex
		accepted   []string // got 202 (or 200 for a resend)
		lostInKill int      // sent to gw1, no answer
		resent200  int      // of those, already accepted by gw1
		resent202  int      // of those, accepted by gw2
		failures   []string
		n202       atomic.Int64
		dead       atomic.Bool
		killOnce   sync.Once
		killedAt   time.Time
	)
	kill := func() {
		killOnce.Do(func() {
			dead.Store(true)
			if err := gw1.proc.Process.Signal(syscall.SIGKILL); err != nil {
				t.Error(err)
			}
			killedAt = time.Now()
		})
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				m := adultReferral("C-REPL-1")
				id := m["id"].(string)
				sealed, err := gw2.cl.Seal(ctx, m)
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("seal %d: %v", i, err))
					mu.Unlock()
					continue
				}
				target := gws[i%2]
				if dead.Load() {
					target = gw2
				}
				r, err := target.cl.Post(ctx, sealed)
				if err != nil && target == gw1 {
					// gw1 died with this request in flight, or before it: the
					// caller does not know; it sends the same bytes to gw2.
					r, err = gw2.cl.Post(ctx, sealed)
					mu.Lock()
					if err == nil && r.Status == http.StatusOK {
						resent200++
						lostInKill++
					} else if err == nil && r.Status == http.StatusAccepted {
						resent202++
						lostInKill++
					}
					mu.Unlock()
				}
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("send %d to %s: %v", i, target.name, err))
				case r.Status == http.StatusAccepted || r.Status == http.StatusOK:
					accepted = append(accepted, id)
				default:
					failures = append(failures, fmt.Sprintf("send %d to %s: HTTP %d %s", i, target.name, r.Status, r.Body))
				}
				mu.Unlock()
				if err == nil && r.Status == http.StatusAccepted && n202.Add(1) == killAfter {
					kill()
				}
			}
		}()
	}
	start := time.Now()
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	kill() // in case fewer than killAfter were accepted
	_, _ = gw1.proc.Process.Wait()
	sendTime := time.Since(start)
	if hangUntilKill {
		hole.Close()
		hole.mu.Lock()
		t.Logf("the hanging recipient accepted %d connections before the kill", hole.n)
		hole.mu.Unlock()
		t.Logf("gw1 logged %d failed (hung) attempts before it was killed",
			len(readWorkerLog(filepath.Join(gw1.dir, "gateway.log")).failed))
		recv = startReceiver(t, dir, pkiDir, recvAddr)
	}
	if len(failures) > 0 {
		t.Errorf("%d sends failed, e.g. %s", len(failures), failures[0])
	}
	if len(accepted) < total/2 {
		t.Fatalf("only %d of %d messages accepted", len(accepted), total)
	}

	// Every accepted message reaches the receiver: gw1's leased deliveries
	// come back after 2×delivery_timeout and gw2 pushes them.
	deadline := time.Now().Add(45 * time.Second)
	for recv.missing(accepted) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	allIn := time.Since(killedAt)
	time.Sleep(500 * time.Millisecond) // late duplicates, if any

	recv.mu.Lock()
	missing, split, deliveries, extraMsgs := 0, 0, 0, 0
	acc := map[string]bool{}
	for _, id := range accepted {
		acc[id] = true
		switch ds := recv.byMsg[id]; {
		case len(ds) == 0:
			missing++
		case len(ds) > 1:
			split++
			t.Errorf("message %s pushed under %d delivery ids: %v", id, len(ds), ds)
		}
	}
	for id, ds := range recv.byMsg {
		deliveries += len(ds)
		if !acc[id] {
			extraMsgs++
		}
	}
	lines, bad := recv.lines, recv.bad
	recv.mu.Unlock()
	duplicates := lines - deliveries

	t.Logf("sent %d in %v (gw1 SIGKILLed after %d 202s); accepted %d (resent to gw2 after the kill: %d, of which 200 replayed %d, 202 %d)",
		total, sendTime.Round(time.Millisecond), killAfter, len(accepted), lostInKill, resent200, resent202)
	t.Logf("accepted %d, delivered %d (distinct messages %d, not among the accepted %d), duplicates %d (same delivery_id), all in %v after the kill",
		len(accepted), deliveries, len(recv.byMsg), extraMsgs, duplicates, allIn.Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("receiver printed %d unreadable lines, e.g. %s", len(bad), bad[0])
	}
	if missing > 0 {
		t.Fatalf("%d accepted messages were not delivered within 45s of the kill", missing)
	}
	if split > 0 {
		t.Fatalf("%d messages pushed under several delivery ids", split)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "received", "*.jwe"))
	if len(files) != deliveries {
		t.Errorf("receiver kept %d envelopes for %d delivery ids", len(files), deliveries)
	}

	// The sender sees `delivered` (from the surviving replica) for a sample.
	sample := accepted
	if len(sample) > 30 {
		sample = sample[len(sample)-30:] // the latest, sent around and after the kill
	}
	notDelivered := 0
	for _, id := range sample {
		var st struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		ok := false
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			r, err := gw2.cl.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
			if err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &st) != nil {
				continue
			}
			if st.Status == "delivered" {
				ok = true
				break
			}
		}
		if !ok {
			notDelivered++
			t.Errorf("message %s: status %q, want delivered", id, st.Status)
		}
	}
	t.Logf("status delivered for %d of %d sampled messages", len(sample)-notDelivered, len(sample))
	// Every attempt ends in a log line (delivered, or failed and retried),
	// except one in flight in gw1 when it died. A delivery gw2 pushed with
	// more attempts counted than the lines logged for it was leased by gw1
	// when it died, and taken over. (Counting lines, not looking for a
	// delivery without failures: under load gw2's first try of a taken-over
	// delivery may also hit the hanging recipient.)
	w1 := readWorkerLog(filepath.Join(gw1.dir, "gateway.log"))
	w2 := readWorkerLog(filepath.Join(gw2.dir, "gateway.log"))
	takenOver := 0
	for id, attempts := range w2.delivered {
		if attempts > 1+w2.failed[id]+w1.failed[id] {
			takenOver++
		}
	}
	t.Logf("pushes acknowledged: gw1 %d, gw2 %d; gw2 took over %d deliveries gw1 held leased when it died",
		len(w1.delivered), len(w2.delivered), takenOver)
	if hangUntilKill {
		if len(w1.delivered) != 0 {
			t.Errorf("gw1 delivered %d while the recipient hung", len(w1.delivered))
		}
		if takenOver == 0 {
			t.Error("gw1 died holding no lease: the takeover was not exercised")
		}
	}

	for _, r := range gws {
		logs, _ := os.ReadFile(filepath.Join(r.dir, "gateway.log"))
		if bytes.Contains(logs, []byte("CANARY")) {
			t.Errorf("personal data reached %s's log", r.name)
		}
		if bytes.Contains(logs, []byte("dead-lettered")) {
			t.Errorf("%s dead-lettered a delivery", r.name)
		}
	}
}

// A Redis outage: sends are refused with 503 `unavailable` (nothing
// accepted) and /readyz says 503; once Redis is back on the same port and
// data, /readyz is 200 again and sends are accepted; every 202 before and
// after the outage is in the recipient's inbox and no 503 is.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts redis and a gateway")
	}
	srv := startRedis(t)
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if code := run([]string{"pki", "init", "--dir", pkiDir}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	gwDir := filepath.Join(dir, "gw1")
	cfg := writeRedisConfig(t, gwDir, pkiDir, srv.URL(), "")
	api, ops := freeAddr(t), freeAddr(t)
	proc := serveProcess(t, gwDir, []string{"XBORDER_LISTEN=" + api, "XBORDER_OPS_LISTEN=" + ops, "XBORDER_REPLICA=gw1"}, "--config", cfg)

	me, err := client.LoadIdentity(pkiDir, "UN-UNICEF")
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New("https://"+api, me)
	ctx := context.Background()
	if _, _, err := cl.GatewayKeys(ctx); err != nil {
		t.Fatal(err)
	}
	newMsg := func() map[string]any {
		return gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
			"subject": gatewaytest.ChildSubject("CANARYOUT", "CANARYAGE"),
			"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
		})
	}
	readyz := func() int {
		c := http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + ops + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	accepted := map[string]bool{}
	sendAccepted := func(phase string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			m := newMsg()
			r, err := cl.Send(ctx, m)
			if err != nil || r.Status != http.StatusAccepted {
				t.Fatalf("%s send %d: %v %v", phase, i, err, r)
			}
			accepted[m["id"].(string)] = true
		}
	}

	const n = 20
	sendAccepted("before the outage", n)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	refused := map[string][]byte{} // id -> the sealed body that got 503
	var worst time.Duration
	other := map[string]int{}
	for i := 0; i < n; i++ {
		m := newMsg()
		sealed, err := cl.Seal(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		r, err := cl.Post(ctx, sealed)
		if d := time.Since(t0); d > worst {
			worst = d
		}
		if err != nil {
			other["error"]++
			t.Errorf("send during the outage: %v", err)
			continue
		}
		p := r.Problem()
		if r.Status != http.StatusServiceUnavailable || p.Code != "unavailable" ||
			!strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
			other[fmt.Sprint(r.Status, " ", p.Code)]++
			t.Errorf("send during the outage: HTTP %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
			continue
		}
		var doc map[string]any
		if json.Unmarshal(r.Body, &doc) != nil || doc["status"] != float64(503) || doc["error_id"] == "" || doc["title"] == nil {
			t.Errorf("503 is not a problem document: %s", r.Body)
		}
		refused[m["id"].(string)] = sealed
	}
	ready503 := 0
	for i := 0; i < 5; i++ {
		if readyz() == http.StatusServiceUnavailable {
			ready503++
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ready503 != 5 {
		t.Errorf("/readyz answered 503 %d times of 5 during the outage", ready503)
	}
	if resp, err := http.Get("http://" + ops + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz during the outage: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	// A status read is refused too, and says so.
	for id := range refused {
		r, err := cl.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
		if err != nil || r.Status != http.StatusServiceUnavailable {
			t.Errorf("status during the outage: %v %v", err, r)
		}
		break
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for readyz() != http.StatusOK {
		if time.Since(back) > 20*time.Second {
			logs, _ := os.ReadFile(filepath.Join(gwDir, "gateway.log"))
			t.Fatalf("/readyz not 200 within 20s of Redis's restart:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	readyAfter := time.Since(back)
	if proc.ProcessState != nil {
		t.Fatal("the gateway exited during the outage")
	}
	// A refusal reserved nothing: nothing is recorded, and the same bytes
	// sent again now are accepted (202, not a replayed 200).
	var retried string
	for id, sealed := range refused {
		r, err := cl.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
		if err != nil || r.Status != http.StatusNotFound {
			t.Errorf("status of a refused message: %v %v", err, r)
		}
		if retried == "" {
			r, err := cl.Post(ctx, sealed)
			if err != nil || r.Status != http.StatusAccepted {
				t.Fatalf("refused message resent after the outage: %v %v", err, r)
			}
			retried = id
		}
	}
	if retried != "" {
		delete(refused, retried)
		accepted[retried] = true
	}
	sendAccepted("after the outage", n)

	reg, err := client.LoadIdentity(pkiDir, "KZ-MJ")
	if err != nil {
		t.Fatal(err)
	}
	rc := client.New("https://"+api, reg)
	inbox := map[string]int{}
	for {
		ds, err := rc.Inbox(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			inbox[d.MessageID]++
			if err := rc.Ack(ctx, d.DeliveryID); err != nil {
				t.Fatal(err)
			}
		}
	}
	missing, leaked := 0, 0
	for id := range accepted {
		if inbox[id] == 0 {
			missing++
		}
	}
	for id := range refused {
		if inbox[id] > 0 {
			leaked++
		}
	}
	t.Logf("accepted %d (before %d, after %d, +1 refused then resent), refused 503 unavailable %d (slowest %v), other answers %v; /readyz 503 %d of 5 during the outage, 200 %v after Redis restarted",
		len(accepted), n, n, len(refused)+1, worst.Round(time.Millisecond), other, ready503, readyAfter.Round(time.Millisecond))
	t.Logf("inbox: %d messages; accepted missing %d, refused present %d", len(inbox), missing, leaked)
	if missing > 0 {
		t.Errorf("%d accepted messages are not in the inbox", missing)
	}
	if leaked > 0 {
		t.Errorf("%d messages refused with 503 are in the inbox", leaked)
	}
	if len(inbox) != len(accepted) {
		t.Errorf("inbox holds %d messages, %d were accepted", len(inbox), len(accepted))
	}
	logs, _ := os.ReadFile(filepath.Join(gwDir, "gateway.log"))
	if bytes.Contains(logs, []byte("CANARY")) {
		t.Error("personal data reached the gateway's log")
	}
}
