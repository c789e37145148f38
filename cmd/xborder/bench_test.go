package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"neither rate nor max": {"--duration", "1s"},
		"both rate and max":    {"--rate", "10", "--max"},
		"no duration":          {"--max", "--duration", "0s"},
	} {
		t.Run(name, func(t *testing.T) {
			c := newBench(&bytes.Buffer{})
			c.SetArgs(args)
			c.SetErr(&bytes.Buffer{})
			if err := c.Execute(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestBenchStartsGateway runs a short bench against the gateway it starts
// itself and checks the report's keys (never its timings).
func TestBenchStartsGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the bench against a gateway it starts")
	}
	// The gateway bench starts inherits the environment: a generous
	// decision deadline, so that its start-up scenarios pass on a loaded machine.
	t.Setenv("XBORDER_POLICY_TIMEOUT", gatewaytest.TestPolicyTimeout.String())
	report := filepath.Join(t.TempDir(), "report.json")
	var out bytes.Buffer
	c := newBench(&out)
	c.SetErr(&bytes.Buffer{})
	c.SetArgs([]string{"--xborder", binary, "--rate", "40", "--duration", "2s", "--report", report})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "floor ratio") {
		t.Fatalf("no table:\n%s", out.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "errors_by_code",
		"gateway_cpu_us_per_msg", "crypto_floor_us_per_msg", "floor_ratio", "peak_rss_mb"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report has no %s", k)
		}
	}
	if rep["unexpected_errors"].(float64) != 0 {
		t.Errorf("unexpected errors: %v", rep["errors_by_code"])
	}
}

// TestBenchEdge runs a short `bench --edge` against the gateway and the
// edge it starts itself: every post is queued and accepted, and the report
// carries the edge's CPU per message and its floor (never a timing verdict).
func TestBenchEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the bench against a gateway and an edge it starts")
	}
	t.Setenv("XBORDER_POLICY_TIMEOUT", gatewaytest.TestPolicyTimeout.String())
	report := filepath.Join(t.TempDir(), "report.json")
	var out bytes.Buffer
	c := newBench(&out)
	c.SetErr(&bytes.Buffer{})
	c.SetArgs([]string{"--xborder", binary, "--edge", "--rate", "20", "--duration", "2s", "--report", report})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "edge floor ratio") {
		t.Fatalf("no table:\n%s", out.String())
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"throughput_per_s", "post_p50_ms", "accepted_p50_ms", "accepted_p99_ms", "machine_steal_pct",
		"edge_cpu_us_per_msg", "edge_floor_us_per_msg", "edge_floor_ratio"} {
		if v, ok := rep[k].(float64); !ok || (k != "machine_steal_pct" && v <= 0) {
			t.Errorf("report %s = %v", k, rep[k])
		}
	}
	if rep["unexpected_errors"].(float64) != 0 || rep["queued"].(float64) == 0 || rep["accepted"] != rep["queued"] {
		t.Errorf("report: %s", b)
	}
}
