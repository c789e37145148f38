package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// liveHeapMetric is the Go collector's name for runtime/metrics
// /gc/heap/live:bytes: the heap that survived the last collection.
const liveHeapMetric = "go_gc_heap_live_bytes"

// LiveHeap reads the gateway's live heap after its last GC, in bytes, from
// its Prometheus endpoint.
func LiveHeap(ctx context.Context, metricsURL string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: %s: %s", metricsURL, resp.Status)
	}
	return parseGauge(resp.Body, liveHeapMetric)
}

// parseGauge finds an unlabelled sample in Prometheus's text format.
func parseGauge(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		return strconv.ParseFloat(strings.TrimSpace(rest), 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("bench: no %s in the metrics", name)
}
