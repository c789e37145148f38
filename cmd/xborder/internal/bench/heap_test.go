package bench

import (
	"strings"
	"testing"
)

func TestParseGauge(t *testing.T) {
	text := "# HELP go_gc_heap_live_bytes Heap memory occupied by live objects.\n" +
		"# TYPE go_gc_heap_live_bytes gauge\n" +
		"go_gc_heap_live_bytes_total 1\n" +
		"go_gc_heap_live_bytes 7.340032e+06\n" +
		"go_goroutines 12\n"
	v, err := parseGauge(strings.NewReader(text), liveHeapMetric)
	if err != nil || v != 7340032 {
		t.Fatalf("got %v, %v; want 7340032", v, err)
	}
	if _, err := parseGauge(strings.NewReader("go_goroutines 12\n"), liveHeapMetric); err == nil {
		t.Fatal("a missing metric was read as a value")
	}
}
