package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// heapSampler reads the live heap every interval during a run.
type heapSampler struct {
	mu       sync.Mutex
	start    time.Time
	duration time.Duration
	samples  []heapSample
	stopc    chan struct{}
	done     chan struct{}
}

type heapSample struct {
	at    time.Duration // since the start of the run
	bytes float64
}

// sampleLiveHeap samples every duration/50 (at most every 2 s, at least
// every 100 ms) until stop.
func sampleLiveHeap(ctx context.Context, metricsURL string, duration time.Duration, logf func(string, ...any)) *heapSampler {
	h := &heapSampler{start: time.Now(), duration: duration, stopc: make(chan struct{}), done: make(chan struct{})}
	every := min(max(duration/50, 100*time.Millisecond), 2*time.Second)
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		failed := false
		for {
			select {
			case <-h.stopc:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			v, err := LiveHeap(ctx, metricsURL)
			if err != nil {
				if !failed {
					logf("live heap: %v", err)
					failed = true
				}
				continue
			}
			h.mu.Lock()
			h.samples = append(h.samples, heapSample{at: time.Since(h.start), bytes: v})
			h.mu.Unlock()
		}
	}()
	return h
}

// stop ends the sampling and returns the medians (MiB) around one fifth
// of the run and at its end, and the growth between them (%). Zeros when
// a window has no sample.
func (h *heapSampler) stop() (fifth, end, growth float64) {
	close(h.stopc)
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return heapWindows(h.samples, h.duration)
}

// heapWindows takes the medians of the samples from 15 to 25 % and from
// 90 to 100 % (and after) of the run.
func heapWindows(samples []heapSample, duration time.Duration) (fifth, end, growth float64) {
	window := func(from, to float64) []float64 {
		var vs []float64
		for _, s := range samples {
			f := float64(s.at) / float64(duration)
			if f >= from && f < to {
				vs = append(vs, s.bytes)
			}
		}
		return vs
	}
	a, b := window(0.15, 0.25), window(0.90, math.Inf(1))
	if len(a) == 0 || len(b) == 0 {
		return 0, 0, 0
	}
	fifth, end = median(a)/(1<<20), median(b)/(1<<20)
	return fifth, end, 100 * (end - fifth) / fifth
}
