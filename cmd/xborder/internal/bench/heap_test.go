package bench

import (
	"strings"
	"testing"
	"time"
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

func TestHeapWindows(t *testing.T) {
	const mib = 1 << 20
	d := 100 * time.Second
	var samples []heapSample
	for i := range 100 {
		v := 10.0 * mib
		switch {
		case i == 20:
			v = 40 * mib // one GC with much in flight: the median ignores it
		case i >= 90:
			v = 11 * mib
		}
		samples = append(samples, heapSample{at: time.Duration(i) * time.Second, bytes: v})
	}
	fifth, end, growth := heapWindows(samples, d)
	if fifth != 10 || end != 11 || growth != 10 {
		t.Fatalf("got %v / %v MiB (%v %%), want 10 / 11 (10 %%)", fifth, end, growth)
	}
	if f, e, _ := heapWindows(samples[:50], d); f != 0 || e != 0 {
		t.Fatalf("a run without end samples reported %v / %v", f, e)
	}
}
