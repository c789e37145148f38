package bench_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xborder/xborder/cmd/xborder/internal/bench"
	"github.com/xborder/xborder/gateway/config"
	"github.com/xborder/xborder/gateway/gatewaytest"
)

// TestRunInProcess drives an in-process gateway briefly and checks the
// report's accounting (never its timings). XBORDER_BENCH_DURATION and
// XBORDER_BENCH_RATE make it a longer run, e.g. under -cpuprofile.
func TestRunInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("drives an in-process gateway for 2 s")
	}
	env := gatewaytest.Start(t, func(c *config.Config) { c.LogLevel = "warn" })
	dur, rate := 2*time.Second, 50
	if v := os.Getenv("XBORDER_BENCH_DURATION"); v != "" {
		dur, _ = time.ParseDuration(v)
	}
	if v := os.Getenv("XBORDER_BENCH_RATE"); v != "" {
		rate, _ = strconv.Atoi(v)
	}
	rep, err := bench.Run(context.Background(), bench.Options{
		Base: env.URL(), PKI: env.PKI, GatewayKeys: filepath.Join(env.PKI, "gateway"),
		PID: os.Getpid(), Rate: rate, Duration: dur, Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep.Table(&buf)
	t.Log("\n" + buf.String())
	if rep.Unexpected != 0 {
		t.Fatalf("unexpected errors: %v", rep.Errors)
	}
	if rep.Sent == 0 || rep.Accepted == 0 || rep.Denied == 0 || rep.Accepted+rep.Denied != rep.Sent {
		t.Fatalf("sent %d, accepted %d, denied %d", rep.Sent, rep.Accepted, rep.Denied)
	}
	if rep.Floor <= 0 || rep.GatewayCPUPerOK <= 0 || rep.PeakRSS <= 0 {
		t.Fatalf("missing measurements: %+v", rep)
	}
}

// TestRunDrain drains while it sends, its acknowledgements several at a
// time: every accepted message's delivery is either acknowledged, and
// counted once, or still in its recipient's queue.
func TestRunDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("drives an in-process gateway for 2 s")
	}
	env := gatewaytest.Start(t, func(c *config.Config) { c.LogLevel = "warn" })
	rep, err := bench.Run(context.Background(), bench.Options{
		Base: env.URL(), PKI: env.PKI, GatewayKeys: filepath.Join(env.PKI, "gateway"),
		Rate: 100, Duration: 2 * time.Second, Drain: true, Log: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unexpected != 0 {
		t.Fatalf("unexpected errors: %v", rep.Errors)
	}
	depths, err := env.Gateway.Store.Depths(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	for _, n := range depths {
		queued += n
	}
	if rep.Drained == 0 || rep.Drained+queued != rep.Accepted {
		t.Errorf("accepted %d, acknowledged %d, still queued %d", rep.Accepted, rep.Drained, queued)
	}
}

func TestProcCPUAndRSS(t *testing.T) {
	if _, err := bench.ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss, err := bench.ProcRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("rss %v, %v", rss, err)
	}
	if _, err := bench.ProcCPU(-1); err == nil {
		t.Fatal("no error for a missing process")
	}
}

// The lookup needs a listening socket of this process, not a gateway.
func TestPIDByPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, err := bench.PIDByPort(l.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	if pid != os.Getpid() {
		t.Fatalf("pid %d, want %d", pid, os.Getpid())
	}
}
