package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/gatewaytest"
	"github.com/xborder/xborder/gateway/store/sentineltest"
)

// The failover suite of issue 23: a Redis Sentinel group (a primary, two
// replicas, three Sentinels, real redis-server processes on free ports)
// under two `xborder serve` replicas sharing it through
// redis-sentinel://, loaded by senders posting signed and encrypted
// messages (some of which the policy denies) and a recipient pulling and
// acknowledging its inbox. The group goes through, in this order: kill -9
// of the primary; the old primary restarted; SIGSTOP of the primary past
// its failover, then SIGCONT; one Redis replica killed; both replicas
// stopped.
//
// The oracle is PROTOCOL.md's, not the code's: a 202 (or the 200 of a
// retry) means the message will be delivered; delivery is at least once
// under one delivery_id; a 503 is `unavailable` and says either that
// nothing was accepted or, with detail outcome_unknown, that the gateway
// does not know (so a later 200 for the same bytes must follow an unknown
// outcome, never a plain "nothing was accepted"); a denial and an
// acceptance are audited; the audit log verifies. An acknowledged message
// never delivered is named with what the store and the audit log hold of
// it, and what the gateways logged of it.
//
// By default the senders pause 100 ms between messages, so that the
// recipient keeps up and deliveries are checked as the run goes.
// XBORDER_FAILOVER_SOAK=1 runs it as a soak: the senders unpaced, each
// phase held for twenty times as many acknowledgements, and minutes
// allowed for the recipient to catch up (a loss, not lateness, is what it
// looks for; the first such run lost 2 of 25,715 acknowledged messages):
//
//	XBORDER_FAILOVER_SOAK=1 go test -run TestFailoverSentinel -timeout 60m -v ./cmd/xborder
func TestFailoverSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Sentinel group and two gateways and waits for two failovers")
	}
	g := sentineltest.Start(t)
	r := startFailoverRun(t, g)
	if os.Getenv("XBORDER_FAILOVER_SOAK") == "1" {
		r.pace, r.scale, r.deliverWithin = 0, 20, 15*time.Minute
		t.Log("soak: senders unpaced, phases twenty times as long")
	}

	r.startLoad()
	r.phase("warm-up")
	r.waitAcks(t, 30, 60*time.Second)

	t.Run("kill -9 of the primary", func(t *testing.T) {
		old := r.primary(t)
		r.failover(t, "kill -9 of the primary", func() {
			if err := old.Kill(); err != nil {
				t.Fatal(err)
			}
		}, nil)
	})
	t.Run("the old primary restarted", func(t *testing.T) {
		ph := r.phase("the old primary restarted")
		old := g.Data[0]
		if err := old.Restart(); err != nil {
			t.Fatal(err)
		}
		primary := r.primary(t)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		if err := g.WaitReplicaOf(ctx, old, primary); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s rejoined as a replica of %s %v after its restart", old.Name, primary.Name, time.Since(ph.start).Round(time.Millisecond))
		hasFunctions(t, old)
		r.waitAcks(t, 20, 60*time.Second)
		r.report(t, ph)
	})
	t.Run("SIGSTOP of the primary past its failover, then SIGCONT", func(t *testing.T) {
		old := r.primary(t)
		r.failover(t, "SIGSTOP of the primary", func() {
			if err := old.Freeze(); err != nil {
				t.Fatal(err)
			}
		}, func(primary *sentineltest.Node) {
			if err := old.Thaw(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			if err := g.WaitReplicaOf(ctx, old, primary); err != nil {
				t.Fatal(err)
			}
			hasFunctions(t, old)
		})
	})
	t.Run("one replica killed", func(t *testing.T) {
		primary := r.primary(t)
		var replica *sentineltest.Node
		for _, n := range g.Data {
			if n != primary {
				replica = n
				break
			}
		}
		ph := r.phase("one replica killed")
		if err := replica.Kill(); err != nil {
			t.Fatal(err)
		}
		// Writes go on: one replica still acknowledges.
		r.waitAcks(t, 40, 60*time.Second)
		r.report(t, ph)
		if err := replica.Restart(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		if err := g.WaitReplicaOf(ctx, replica, primary); err != nil {
			t.Fatal(err)
		}
		r.waitDelivered(t, 60*time.Second)
	})
	r.stopLoad()
	t.Run("both replicas stopped", func(t *testing.T) { r.bothReplicasStopped(t) })
	r.check(t)
}

// failoverRun is the gateways, the load and what every party saw.
type failoverRun struct {
	t      *testing.T
	g      *sentineltest.Group
	dir    string
	pkiDir string
	gws    []*foGateway
	sender map[string][]*client.Client // identity -> one client per gateway
	inbox  []*client.Client            // KZ-MJ, one per gateway

	mu       sync.Mutex
	sent     []*foMessage
	cur      *foPhase
	phases   []*foPhase
	received map[string]map[string]int // message id -> delivery id -> times fetched
	recvErrs int

	stop     chan struct{}
	load     sync.WaitGroup
	quit     chan struct{} // recipient and /readyz watchers
	bg       sync.WaitGroup
	switches <-chan *sentineltest.Node

	// What XBORDER_FAILOVER_SOAK changes: the senders' pause between
	// messages, the factor on each phase's acknowledgements, and how long
	// the recipient has to catch up.
	pace          time.Duration
	scale         int
	deliverWithin time.Duration
}

type foGateway struct {
	name, api, ops, dir, cfg string
	proc                     *exec.Cmd
}

// foMessage is one message and every answer its sender got.
type foMessage struct {
	id     string
	deny   bool // the policy denies it (R6)
	from   string
	sealed []byte

	mu      sync.Mutex
	answers []foAnswer
}

type foAnswer struct {
	status         int
	code, detail   string
	err            error
	took           time.Duration
	at             time.Time
	gw             int
	phase          string
	problemJSONBad bool
}

// foPhase is one stretch of the run: its acknowledgements and its 503s.
type foPhase struct {
	name  string
	start time.Time

	mu            sync.Mutex
	acks, denials int
	n503, unknown int
	first503      time.Time
	last503       time.Time
	slowest503    time.Duration
	longestRun    int           // consecutive 503s of one message
	longestRunDur time.Duration // from its first 503's request to its end
	readyz        map[string]int
	notes         []string
}

func startFailoverRun(t *testing.T, g *sentineltest.Group) *failoverRun {
	dir := t.TempDir()
	r := &failoverRun{t: t, g: g, dir: dir, pkiDir: filepath.Join(dir, "pki"), sender: map[string][]*client.Client{},
		received: map[string]map[string]int{}, stop: make(chan struct{}), quit: make(chan struct{}),
		pace: 100 * time.Millisecond, scale: 1, deliverWithin: 60 * time.Second}
	if code := run([]string{"pki", "init", "--dir", r.pkiDir}, &bytes.Buffer{}, os.Stderr); code != 0 {
		t.Fatalf("pki init exit %d", code)
	}
	t.Cleanup(func() {
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		r.load.Wait()
		close(r.quit)
		r.bg.Wait()
	})
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sw, err := g.Switches(sctx)
	if err != nil {
		t.Fatal(err)
	}
	r.switches = sw
	// XBORDER_FAILOVER_LOGS=DIR keeps the gateways' and the Redis nodes'
	// logs, to read after the temporary directory is gone.
	if keep := os.Getenv("XBORDER_FAILOVER_LOGS"); keep != "" {
		t.Cleanup(func() {
			_ = os.MkdirAll(keep, 0o700)
			for _, gw := range r.gws {
				b, _ := os.ReadFile(filepath.Join(gw.dir, "gateway.log"))
				_ = os.WriteFile(filepath.Join(keep, gw.name+".log"), b, 0o600)
			}
			for _, n := range g.Data {
				_ = os.WriteFile(filepath.Join(keep, n.Name+".log"), []byte(n.Log()), 0o600)
			}
			t.Logf("logs kept in %s", keep)
		})
	}
	// A fetched delivery whose acknowledgement a failover lost comes back
	// after inbox_visibility: short, so that the run need not wait a minute.
	for _, name := range []string{"gw1", "gw2"} {
		gw := &foGateway{name: name, api: freeAddr(t), ops: freeAddr(t), dir: filepath.Join(dir, name)}
		extra := fmt.Sprintf("listen: %s\nops_listen: %s\nops_token_file: %s\ninbox_visibility: 2s\nreplica: %s\n",
			gw.api, gw.ops, filepath.Join(r.pkiDir, "ops.token"), name)
		gw.cfg = writeRedisConfig(t, gw.dir, r.pkiDir, g.URL(), extra)
		gw.proc = serveProcess(t, gw.dir, []string{"XBORDER_LISTEN=" + gw.api, "XBORDER_OPS_LISTEN=" + gw.ops, "XBORDER_REPLICA=" + name}, "--config", gw.cfg)
		r.gws = append(r.gws, gw)
	}
	for _, id := range []string{"UN-UNICEF", "KZ-MVD", "KZ-MJ"} {
		me, err := client.LoadIdentity(r.pkiDir, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, gw := range r.gws {
			c := client.New("https://"+gw.api, me)
			if _, _, err := c.GatewayKeys(t.Context()); err != nil {
				t.Fatal(err)
			}
			if id == "KZ-MJ" {
				r.inbox = append(r.inbox, c)
			} else {
				r.sender[id] = append(r.sender[id], c)
			}
		}
	}
	r.phase("start")
	r.bg.Add(1 + len(r.gws))
	go r.recipient()
	for i := range r.gws {
		go r.watchReadyz(i)
	}
	return r
}

// phase starts a new stretch; what is answered from now on counts in it.
func (r *failoverRun) phase(name string) *foPhase {
	p := &foPhase{name: name, start: time.Now(), readyz: map[string]int{}}
	r.mu.Lock()
	r.cur = p
	r.phases = append(r.phases, p)
	r.mu.Unlock()
	return p
}

func (r *failoverRun) current() *foPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *failoverRun) primary(t *testing.T) *sentineltest.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := r.g.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newMessage builds a message: one in five is a border screening of a
// child, which R6 denies; the others are identity verifications for
// KZ-MJ's inbox, which are allowed.
func (r *failoverRun) newMessage(deny bool) *foMessage {
	var m map[string]any
	from := "UN-UNICEF"
	if deny {
		from = "KZ-MVD"
		m = gatewaytest.Message("KZ-MVD", "UZ-MVD", "identity.verification.request", "border-screening", map[string]any{
			"subject": gatewaytest.ChildSubject("CANARYFAIL", "CANARYOVER"),
			"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
		})
	} else {
		m = gatewaytest.Message("UN-UNICEF", "KZ-MJ", "identity.verification.request", "identity-verification", map[string]any{
			"subject": gatewaytest.ChildSubject("CANARYFAIL", "CANARYOVER"),
			"record":  map[string]any{"requested_assertions": []string{"identity_match"}},
		})
	}
	sealed, err := r.sender[from][0].Seal(context.Background(), m)
	if err != nil {
		r.t.Errorf("seal: %v", err)
		return nil
	}
	msg := &foMessage{id: m["id"].(string), deny: deny, from: from, sealed: sealed}
	r.mu.Lock()
	r.sent = append(r.sent, msg)
	r.mu.Unlock()
	return msg
}

// post sends the message's bytes once to gateway gw and records the answer.
func (r *failoverRun) post(m *foMessage, gw int) foAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := r.sender[m.from][gw].Post(ctx, m.sealed)
	a := foAnswer{err: err, took: time.Since(start), at: time.Now(), gw: gw}
	if err == nil {
		a.status = resp.Status
		p := resp.Problem()
		a.code, a.detail = p.Code, p.Detail
		if resp.Status >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			a.problemJSONBad = true
		}
	}
	ph := r.current()
	a.phase = ph.name
	m.mu.Lock()
	m.answers = append(m.answers, a)
	m.mu.Unlock()
	ph.mu.Lock()
	switch {
	case a.status == http.StatusAccepted || a.status == http.StatusOK:
		ph.acks++
	case a.status == http.StatusForbidden:
		ph.denials++
	case a.status == http.StatusServiceUnavailable:
		ph.n503++
		if a.detail == "outcome_unknown" {
			ph.unknown++
		}
		if ph.first503.IsZero() {
			ph.first503 = start
		}
		ph.last503 = a.at
		ph.slowest503 = max(ph.slowest503, a.took)
	}
	ph.mu.Unlock()
	return a
}

// settle sends the message until it gets a final answer (202, 200 or 403),
// alternating gateways as a client with two addresses does, backing off a
// little after a 503.
func (r *failoverRun) settle(m *foMessage, gw int, deadline time.Time) {
	run, runStart := 0, time.Time{}
	var runPhase *foPhase // the phase the run of 503s began in
	for {
		start := time.Now()
		a := r.post(m, gw)
		if a.err == nil && a.status != http.StatusServiceUnavailable {
			if run > 0 {
				ph := runPhase
				ph.mu.Lock()
				if run > ph.longestRun || (run == ph.longestRun && a.at.Sub(runStart) > ph.longestRunDur) {
					ph.longestRun, ph.longestRunDur = run, a.at.Sub(runStart)
				}
				ph.mu.Unlock()
			}
			return
		}
		if run == 0 {
			runStart, runPhase = start, r.current()
		}
		run++
		if time.Now().After(deadline) {
			r.t.Errorf("message %s: no final answer within its deadline (last: HTTP %d %s %v)", m.id, a.status, a.detail, a.err)
			return
		}
		gw = 1 - gw
		time.Sleep(50 * time.Millisecond)
	}
}

// startLoad runs four senders until stopLoad; each finishes the message
// it holds before it stops.
func (r *failoverRun) startLoad() {
	for w := range 4 {
		r.load.Add(1)
		go func() {
			defer r.load.Done()
			for i := 0; ; i++ {
				select {
				case <-r.stop:
					return
				default:
				}
				m := r.newMessage(i%5 == 4)
				if m == nil {
					return
				}
				r.settle(m, (w+i)%2, time.Now().Add(3*time.Minute))
				// A steady load the recipient keeps up with on a shared
				// machine: what is acknowledged is delivered as it goes
				// (none in a soak).
				time.Sleep(r.pace)
			}
		}()
	}
}

func (r *failoverRun) stopLoad() {
	close(r.stop)
	r.load.Wait()
}

// waitAcks waits until the current phase has n acknowledgements.
func (r *failoverRun) waitAcks(t *testing.T, n int, within time.Duration) {
	t.Helper()
	n, within = n*r.scale, within*time.Duration(r.scale)
	ph := r.current()
	deadline := time.Now().Add(within)
	for {
		ph.mu.Lock()
		acks := ph.acks
		ph.mu.Unlock()
		if acks >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d acknowledgements within %v, want %d", ph.name, acks, within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failover does fault to the primary, waits for Sentinel's +switch-master,
// runs afterSwitch (with the new primary), and waits for the load to be
// acknowledged again and for everything acknowledged so far to be
// delivered.
func (r *failoverRun) failover(t *testing.T, what string, fault func(), afterSwitch func(*sentineltest.Node)) {
	// A spurious earlier switch would be taken for this one.
	for len(r.switches) > 0 {
		t.Logf("an earlier +switch-master to %s", (<-r.switches).Name)
	}
	ph := r.phase(what)
	fault()
	var primary *sentineltest.Node
	select {
	case primary = <-r.switches:
	case <-time.After(60 * time.Second):
		t.Fatalf("no +switch-master within 60 s of the %s", what)
	}
	switched := time.Since(ph.start)
	ph.note("+switch-master to %s %v after the fault", primary.Name, switched.Round(time.Millisecond))
	if afterSwitch != nil {
		afterSwitch(primary)
	}
	after := r.phase(what + ", after the switch")
	r.waitAcks(t, 40, 60*time.Second)
	// The first acknowledgement after the switch, from either gateway.
	var first time.Time
	r.mu.Lock()
	for _, m := range r.sent {
		m.mu.Lock()
		for _, a := range m.answers {
			if (a.status == http.StatusAccepted || a.status == http.StatusOK) && a.at.After(ph.start.Add(switched)) && (first.IsZero() || a.at.Before(first)) {
				first = a.at
			}
		}
		m.mu.Unlock()
	}
	r.mu.Unlock()
	if !first.IsZero() {
		ph.note("first acknowledgement %v after the switch was announced", first.Sub(ph.start.Add(switched)).Round(time.Millisecond))
	}
	r.report(t, ph)
	r.report(t, after)
	// The whole 503 window of the failover, for the README.
	ph.mu.Lock()
	after.mu.Lock()
	if n := ph.n503 + after.n503; n > 0 {
		first, last := ph.first503, ph.last503
		if first.IsZero() {
			first = after.first503
		}
		if after.last503.After(last) {
			last = after.last503
		}
		t.Logf("SUMMARY %s: +switch-master %v after the fault; %d × 503 (%d outcome_unknown) from %v to %v after the fault (window %v), slowest 503 answer %v; longest run of 503s for one message: %d answers, %v",
			what, switched.Round(time.Millisecond), n, ph.unknown+after.unknown, first.Sub(ph.start).Round(time.Millisecond), last.Sub(ph.start).Round(time.Millisecond),
			last.Sub(first).Round(time.Millisecond), max(ph.slowest503, after.slowest503).Round(time.Millisecond),
			max(ph.longestRun, after.longestRun), max(ph.longestRunDur, after.longestRunDur).Round(time.Millisecond))
	}
	after.mu.Unlock()
	ph.mu.Unlock()
	if ph.readyzNotReady() == 0 {
		t.Errorf("%s: /readyz never said not ready", what)
	} else if !ph.readyzSaid("(redis: ") {
		t.Errorf("%s: /readyz never said which condition keeps the store from writing", what)
	}
	for _, p := range []*foPhase{ph, after} {
		if p.readyzSaid("(no detail)") {
			t.Errorf("%s: /readyz said not ready without saying why", p.name)
		}
	}
	r.waitDelivered(t, 60*time.Second)
}

func (p *foPhase) note(format string, args ...any) {
	p.mu.Lock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *foPhase) readyzNotReady() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.readyz {
		if !strings.HasPrefix(k, "200") {
			n += v
		}
	}
	return n
}

func (p *foPhase) readyzSaid(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.readyz {
		if !strings.HasPrefix(k, "200") && strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// report logs what the phase saw: its 503 window and longest run, and
// what /readyz said.
func (r *failoverRun) report(t *testing.T, p *foPhase) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d acknowledged, %d denied, %d × 503 (%d outcome_unknown)", p.name, p.acks, p.denials, p.n503, p.unknown)
	if p.n503 > 0 {
		fmt.Fprintf(&b, "; 503 window %v (first request answered 503 to the last 503), slowest 503 answer %v; longest run of 503s for one message: %d over %v",
			p.last503.Sub(p.first503).Round(time.Millisecond), p.slowest503.Round(time.Millisecond), p.longestRun, p.longestRunDur.Round(time.Millisecond))
	}
	for _, n := range p.notes {
		fmt.Fprintf(&b, "; %s", n)
	}
	var rz []string
	for k, v := range p.readyz {
		rz = append(rz, fmt.Sprintf("%d × %s", v, k))
	}
	slices.Sort(rz)
	fmt.Fprintf(&b, "; /readyz: %s", strings.Join(rz, ", "))
	t.Log(b.String())
}

// recipient pulls KZ-MJ's inbox from both gateways in turn and
// acknowledges what it gets, until the run ends.
func (r *failoverRun) recipient() {
	defer r.bg.Done()
	for i := 0; ; i++ {
		select {
		case <-r.quit:
			return
		default:
		}
		c := r.inbox[i%2]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ds, err := c.Inbox(ctx, 50)
		if err != nil {
			r.mu.Lock()
			r.recvErrs++
			r.mu.Unlock()
		}
		for _, d := range ds {
			r.mu.Lock()
			if r.received[d.MessageID] == nil {
				r.received[d.MessageID] = map[string]int{}
			}
			r.received[d.MessageID][d.DeliveryID]++
			r.mu.Unlock()
			if c.Ack(ctx, d.DeliveryID) != nil {
				r.mu.Lock()
				r.recvErrs++
				r.mu.Unlock()
			}
		}
		cancel()
		if len(ds) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// watchReadyz asks gateway i's /readyz every 100 ms and counts each
// answer (status and what it says of the store) in the current phase.
func (r *failoverRun) watchReadyz(i int) {
	defer r.bg.Done()
	hc := http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-r.quit:
			return
		case <-time.After(100 * time.Millisecond):
		}
		key := "error"
		resp, err := hc.Get("http://" + r.gws[i].ops + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var doc struct {
				Checks  map[string]string `json:"checks"`
				Details map[string]string `json:"details"`
			}
			_ = json.Unmarshal(body, &doc)
			key = fmt.Sprintf("%d store %s", resp.StatusCode, doc.Checks["store"])
			if d := doc.Details["store"]; d != "" {
				key += " (" + d + ")"
			}
			if resp.StatusCode != http.StatusOK && doc.Details["store"] == "" {
				// /readyz must say which condition keeps it from being ready.
				key += " (no detail)"
			}
		}
		ph := r.current()
		ph.mu.Lock()
		ph.readyz[key]++
		ph.mu.Unlock()
	}
}

// waitDelivered waits until every message acknowledged so far is in the
// recipient's hands: deliveries resume by themselves after a failover.
func (r *failoverRun) waitDelivered(t *testing.T, within time.Duration) {
	t.Helper()
	within = max(within, r.deliverWithin)
	start := time.Now()
	deadline := start.Add(within)
	// What is acknowledged from now on is the next wait's: unpaced
	// senders would keep the recipient from ever being done.
	var ids []string
	r.mu.Lock()
	for _, m := range r.sent {
		if m.acked() {
			ids = append(ids, m.id)
		}
	}
	r.mu.Unlock()
	for {
		missing := r.undelivered(ids)
		if len(missing) == 0 {
			t.Logf("every message acknowledged so far (%d) delivered %v later", len(ids), time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d acknowledged messages not delivered within %v", len(missing), len(ids), within)
			for _, d := range r.diagnose(missing[:min(len(missing), 5)]) {
				t.Errorf("not delivered: %s", d)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *failoverRun) undelivered(ids []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing []string
	for _, id := range ids {
		if len(r.received[id]) == 0 {
			missing = append(missing, id)
		}
	}
	return missing
}

// diagnose says, for each message, what its sender was told (every
// answer: phase, gateway, status, detail, when, how long it took), what the
// gateways say of it now (its status: accepted, delivered or dead-lettered,
// and its delivery attempts), whether the recipient ever fetched it, its
// entries in the audit log (every kind, with replica, sequence and
// re-application), whether it is among the dead letters, and every line
// the gateways logged of it, and what the journal made again in the run.
// Enough to tell a message never committed from one erased by a failover,
// one the queue lost, and one the recipient was handed and dropped.
func (r *failoverRun) diagnose(ids []string) []string {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	audits := map[string][]string{}
	out, errOut, code := runCommand(r.t, r.dir, "audit", "export", "--config", r.gws[0].cfg)
	if code != 0 {
		for _, id := range ids {
			audits[id] = []string{fmt.Sprintf("audit export: exit %d: %s", code, strings.TrimSpace(errOut))}
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l struct {
			Entry json.RawMessage `json:"entry"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Entry == nil {
			continue
		}
		var e struct {
			MessageID string `json:"message_id"`
		}
		if json.Unmarshal(l.Entry, &e) == nil && want[e.MessageID] {
			audits[e.MessageID] = append(audits[e.MessageID], string(l.Entry))
		}
	}
	token, _ := os.ReadFile(filepath.Join(r.pkiDir, "ops.token"))
	dead := ""
	req, _ := http.NewRequest(http.MethodGet, "http://"+r.gws[0].ops+"/deadletters", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	hc := http.Client{Timeout: 10 * time.Second}
	if resp, err := hc.Do(req); err != nil {
		dead = err.Error()
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		dead = fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
	}
	logs := map[string][]string{}
	var reapplied []string
	for _, gw := range r.gws {
		b, _ := os.ReadFile(filepath.Join(gw.dir, "gateway.log"))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "reappl") || strings.Contains(line, "re-appl") || strings.Contains(line, "journal") {
				reapplied = append(reapplied, gw.name+": "+line)
			}
			for _, id := range ids {
				if strings.Contains(line, id) {
					logs[id] = append(logs[id], gw.name+": "+line)
				}
			}
		}
	}
	var res []string
	for _, id := range ids {
		var b strings.Builder
		b.WriteString(r.describe(id))
		r.mu.Lock()
		fmt.Fprintf(&b, "; fetched by the recipient: %v", r.received[id])
		r.mu.Unlock()
		fmt.Fprintf(&b, "; audit entries: %d %v", len(audits[id]), audits[id])
		fmt.Fprintf(&b, "; among the dead letters: %v", strings.Contains(dead, id))
		fmt.Fprintf(&b, "; logged: %v", logs[id])
		res = append(res, b.String())
	}
	if len(ids) > 0 {
		res = append(res, fmt.Sprintf("the journal's lines in the gateways' logs: %d %v", len(reapplied), reapplied[:min(len(reapplied), 40)]))
		if !strings.HasPrefix(dead, "HTTP 200") {
			res = append(res, "dead letters: "+dead)
		}
	}
	return res
}

// describe says what the sender was told of a message and what the
// gateways say of it now.
func (r *failoverRun) describe(id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", id)
	r.mu.Lock()
	var m *foMessage
	for _, x := range r.sent {
		if x.id == id {
			m = x
		}
	}
	r.mu.Unlock()
	if m == nil {
		return b.String() + " never sent"
	}
	m.mu.Lock()
	for _, a := range m.answers {
		fmt.Fprintf(&b, " [%s: gw%d HTTP %d %s %s %v at %s after %v]", a.phase, a.gw+1, a.status, a.code, a.detail, a.err,
			a.at.Format("15:04:05.000"), a.took.Round(time.Millisecond))
	}
	m.mu.Unlock()
	for i, c := range r.sender[m.from] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Do(ctx, http.MethodGet, "/v1/messages/"+id, "", nil)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "; status from gw%d: %v", i+1, err)
		} else {
			fmt.Fprintf(&b, "; status from gw%d: HTTP %d %s", i+1, resp.Status, resp.Body)
		}
	}
	return b.String()
}

func (m *foMessage) acked() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.answers {
		if a.status == http.StatusAccepted || a.status == http.StatusOK {
			return true
		}
	}
	return false
}

// bothReplicasStopped freezes both Redis replicas (SIGSTOP) with no other
// load: no change can be held by a replica, so every send is answered 503
// at once, never 202 or 403 (an answer the group cannot keep), a retry of
// the same bytes too; /readyz says why. Once they are thawed, a retry of
// each gets one final answer, and the accepted ones are delivered once.
func (r *failoverRun) bothReplicasStopped(t *testing.T) {
	primary := r.primary(t)
	var replicas []*sentineltest.Node
	for _, n := range r.g.Data {
		if n != primary {
			replicas = append(replicas, n)
		}
	}
	ph := r.phase("both replicas stopped")
	for _, n := range replicas {
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	thawed := false
	thaw := func() {
		if !thawed {
			for _, n := range replicas {
				n.Thaw()
			}
			thawed = true
		}
	}
	defer thaw()
	var msgs []*foMessage
	for i := range 10 {
		m := r.newMessage(i%5 == 4)
		if m == nil {
			t.FailNow()
		}
		msgs = append(msgs, m)
		for try := range 2 { // the message, then its retry
			a := r.post(m, (i+try)%2)
			switch {
			case a.err != nil:
				t.Errorf("send %d (try %d) with both replicas stopped: %v after %v", i, try, a.err, a.took.Round(time.Millisecond))
			case a.status != http.StatusServiceUnavailable || a.code != "unavailable" || a.problemJSONBad:
				t.Errorf("send %d (try %d, deny %v) with both replicas stopped: HTTP %d %s %s after %v, want 503 unavailable",
					i, try, m.deny, a.status, a.code, a.detail, a.took.Round(time.Millisecond))
			case a.took > 5*time.Second:
				t.Errorf("send %d (try %d): 503 after %v, not at once", i, try, a.took.Round(time.Millisecond))
			}
		}
	}
	// /readyz says not ready, and which condition, within its probe's
	// second.
	deadline := time.Now().Add(10 * time.Second)
	for ph.readyzNotReady() < 2*len(r.gws) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r.report(t, ph)
	if ph.readyzNotReady() == 0 {
		t.Error("/readyz never said not ready with both replicas stopped")
	} else if !ph.readyzSaid("(redis: ") {
		t.Error("/readyz never said which condition keeps the store from writing with both replicas stopped")
	}
	after := r.phase("both replicas thawed")
	thaw()
	for _, n := range replicas {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		err := r.g.WaitReplicaOf(ctx, n, primary)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range msgs {
		r.settle(m, i%2, time.Now().Add(time.Minute))
		m.mu.Lock()
		last := m.answers[len(m.answers)-1]
		m.mu.Unlock()
		want := map[bool][]int{false: {http.StatusAccepted, http.StatusOK}, true: {http.StatusForbidden}}[m.deny]
		if !slices.Contains(want, last.status) {
			t.Errorf("retry of send %d after the thaw: HTTP %d %s, want %v", i, last.status, last.code, want)
		}
	}
	r.report(t, after)
	r.waitDelivered(t, 60*time.Second)
}

// check is the oracle over the whole run.
func (r *failoverRun) check(t *testing.T) {
	// Late duplicates under a new delivery id, if any, show within the
	// visibility timeout: wait for one more than it, then stop reading.
	time.Sleep(3 * time.Second)
	close(r.quit)
	r.bg.Wait()
	r.quit = make(chan struct{}) // for the cleanup

	r.mu.Lock()
	defer r.mu.Unlock()
	var acked, denied, split, extra, lied, unanswered, deniedDelivered, wrongAnswer, bad503 int
	ackedIDs, deniedIDs := map[string]bool{}, map[string]bool{}
	for _, m := range r.sent {
		m.mu.Lock()
		unknownBefore := false
		final := 0
		for _, a := range m.answers {
			switch {
			case a.err != nil:
				unknownBefore = true // the answer was lost: the outcome too
			case a.status == http.StatusServiceUnavailable:
				if a.code != "unavailable" || a.problemJSONBad {
					bad503++
					t.Errorf("message %s: 503 %q %q is not PROTOCOL's unavailable problem", m.id, a.code, a.detail)
				}
				if a.detail == "outcome_unknown" {
					unknownBefore = true
				}
			case a.status == http.StatusOK:
				// A retry of an accepted message: some earlier attempt was
				// accepted, so none of them may have said "nothing was
				// accepted" unless an unknown outcome came between.
				if !unknownBefore {
					lied++
					t.Errorf("message %s: 200 for a retry after answers that said nothing was accepted: %v", m.id, m.answers)
				}
				final = a.status
			case a.status == http.StatusAccepted, a.status == http.StatusForbidden:
				final = a.status
			default:
				wrongAnswer++
				t.Errorf("message %s: HTTP %d %s %s", m.id, a.status, a.code, a.detail)
			}
		}
		m.mu.Unlock()
		switch {
		case final == 0:
			unanswered++
		case m.deny && final != http.StatusForbidden, !m.deny && final == http.StatusForbidden:
			wrongAnswer++
			t.Errorf("message %s (deny %v): final answer %d", m.id, m.deny, final)
		case final == http.StatusForbidden:
			denied++
			deniedIDs[m.id] = true
		default:
			acked++
			ackedIDs[m.id] = true
		}
		ds := r.received[m.id]
		switch {
		case len(ds) > 1:
			split++
			t.Errorf("message %s delivered under %d delivery ids: %v", m.id, len(ds), ds)
		case m.deny && len(ds) > 0:
			deniedDelivered++
			t.Errorf("denied message %s delivered", m.id)
		case len(ds) > 0 && !ackedIDs[m.id]:
			extra++
			t.Errorf("message %s delivered but never acknowledged: %v", m.id, m.answers)
		}
	}
	fetched, deliveries := 0, 0
	for _, ds := range r.received {
		deliveries += len(ds)
		for _, n := range ds {
			fetched += n
		}
	}
	t.Logf("sent %d messages: %d acknowledged (202/200), %d denied (403), %d without a final answer; delivered %d (fetched %d times: %d again under the same delivery id), inbox errors %d",
		len(r.sent), acked, denied, unanswered, deliveries, fetched, fetched-deliveries, r.recvErrs)
	if unanswered > 0 {
		t.Errorf("%d messages got no final answer", unanswered)
	}
	var missing []string
	for id := range ackedIDs {
		if len(r.received[id]) == 0 {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	t.Logf("LOST: %d of %d acknowledged messages never delivered", len(missing), acked)
	if len(missing) > 0 {
		r.mu.Unlock()
		diag := r.diagnose(missing[:min(len(missing), 20)])
		r.mu.Lock()
		for _, d := range diag {
			t.Errorf("acknowledged message never delivered: %s", d)
		}
	}

	// Every 202 and 403 has its audit entry, read through the operator API.
	out, errOut, code := runCommand(t, r.dir, "audit", "export", "--config", r.gws[0].cfg)
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	accepted, deniedEntries := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	entries := 0
	for sc.Scan() {
		var l struct {
			Entry *struct {
				Kind      string `json:"kind"`
				MessageID string `json:"message_id"`
			} `json:"entry"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Entry == nil {
			continue
		}
		e := l.Entry
		entries++
		switch e.Kind {
		case "accepted":
			accepted[e.MessageID]++
		case "denied":
			deniedEntries[e.MessageID]++
		}
	}
	noEntry, twice, strayAccepted := 0, 0, 0
	for id := range ackedIDs {
		switch accepted[id] {
		case 0:
			noEntry++
			t.Errorf("acknowledged message %s has no accepted audit entry", id)
		case 1:
		default:
			twice++
			t.Errorf("message %s has %d accepted audit entries", id, accepted[id])
		}
	}
	for id := range deniedIDs {
		if deniedEntries[id] == 0 {
			noEntry++
			t.Errorf("denied message %s has no denied audit entry", id)
		}
	}
	for id := range accepted {
		if !ackedIDs[id] {
			strayAccepted++
			t.Errorf("audit entry accepted for %s, which no sender was told was accepted", id)
		}
	}
	t.Logf("audit export via the operator API: %d entries; acknowledged without an accepted entry or denied without a denied entry: %d; accepted entries twice: %d; accepted entries of messages never acknowledged: %d",
		entries, noEntry, twice, strayAccepted)
	if out, errOut, code := runCommand(t, r.dir, "audit", "verify", "--config", r.gws[0].cfg); code != 0 {
		t.Errorf("audit verify: exit %d: %s %s", code, out, errOut)
	} else {
		t.Logf("audit verify: %s", strings.TrimSpace(out))
	}
	for _, gw := range r.gws {
		logs, _ := os.ReadFile(filepath.Join(gw.dir, "gateway.log"))
		if bytes.Contains(logs, []byte("CANARY")) {
			t.Errorf("personal data reached %s's log", gw.name)
		}
	}
}

// runCommand runs the built binary in dir.
func runCommand(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errOut.String(), code
}

// hasFunctions checks that a node has the store's function library.
func hasFunctions(t *testing.T, n *sentineltest.Node) {
	t.Helper()
	c := n.Client()
	defer c.Close()
	libs, err := c.FunctionList(t.Context(), redis.FunctionListQuery{}).Result()
	if err != nil || len(libs) != 1 || libs[0].Name != "xkv1" {
		t.Errorf("%s: FUNCTION LIST %+v (%v), want the library xkv1", n.Name, libs, err)
	}
}
