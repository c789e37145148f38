package gatewaytest

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/pki"
	"github.com/xborder/xborder/gateway/store/redistest"
)

// Redis runs the gateway on a fresh real redis-server (AOF, appendfsync
// always: the durability the gateway requires), started for the test on a
// free port and killed when it ends.
func Redis(t testing.TB) Option {
	t.Helper()
	url := redistest.Start(t)
	return func(c *config.Config) { c.Store = url }
}

// Clock is a test clock: it starts at the real time and moves only when
// told (Advance), so that a test of the time window waits for nothing.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now is the real time plus every Advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// StartClock is Start with the exchange on clock (the time window of
// messages: iat, exp, late retries).
func StartClock(t testing.TB, clock *Clock, opts ...Option) *Env {
	t.Helper()
	pkiDir, cfg := Config(t, pki.DemoFederation(), opts...)
	return StartWith(t, pkiDir, cfg, gateway.WithClock(clock.Now))
}

// waitStep is how often the Wait helpers look again; they wait for the
// event, never for a fixed time (STYLE 18), up to within.
const waitStep = 20 * time.Millisecond

// WaitLog waits until a line of the gateway's log contains every one of
// parts (a message and a field, say), and returns that line; it fails the
// test after within.
func (e *Env) WaitLog(within time.Duration, parts ...string) string {
	e.T.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, line := range strings.Split(e.Logs.String(), "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("no log line with %q within %s", parts, within)
		}
		time.Sleep(waitStep)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// Metric reads one series of the gateway's /metrics: the value of the
// first sample whose line starts with series (a name with its labels as
// Prometheus prints them, e.g. `xborder_policy_reloads_total{result="refused"}`);
// ok is false when it is absent.
func (e *Env) Metric(series string) (v float64, ok bool) {
	e.T.Helper()
	resp, err := http.Get(e.OpsURL() + "/metrics")
	if err != nil {
		e.T.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, found := strings.CutPrefix(line, series+" "); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// WaitMetric waits until the series' value satisfies ok, and returns it;
// it fails the test after within.
func (e *Env) WaitMetric(within time.Duration, series string, want func(float64) bool) float64 {
	e.T.Helper()
	deadline := time.Now().Add(within)
	for {
		if v, found := e.Metric(series); found && want(v) {
			return v
		}
		if time.Now().After(deadline) {
			v, _ := e.Metric(series)
			e.T.Fatalf("metric %s is %v after %s", series, v, within)
		}
		time.Sleep(waitStep)
	}
}
