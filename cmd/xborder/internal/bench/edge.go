package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
)

// EdgeOptions configure one load run against an edge's local API
// (`xborder bench --edge`).
type EdgeOptions struct {
	API     string // http://127.0.0.1:PORT of the edge's local API
	Metrics string // http://…/metrics of the edge's operator listener
	Token   string // a local bearer token ("" on a loopback edge without tokens)
	PID     int    // the edge's process, for /proc (0: not measured)

	Rate     int           // posts per second; 0: flat out
	Duration time.Duration // how long to post
	Conns    int           // concurrent posts (0: 8 flat out, 64 at a rate)
	// Body is the plain JSON every post carries (the edge gives each its
	// own id); nil: the demo verification request to KZ-MJ.
	Body []byte
	// Participant is the edge's participant id, and Sign its signing key
	// and HubEnc the hub's encryption key, for the floor; a nil key is
	// replaced by a fresh P-256 key (the same cost).
	Participant string
	Sign        *envelope.PrivateKey
	HubEnc      *envelope.PublicKey
	FloorN      int // messages for the floor (0: up to 2000)
	// Settle bounds the wait for the last final answers after the posts
	// (0: 2 minutes).
	Settle time.Duration
	Log    func(format string, args ...any)
}

// EdgeReport is what an edge run measured.
type EdgeReport struct {
	Machine    string         `json:"machine"`
	Cores      int            `json:"cores"`
	Mode       string         `json:"mode"`
	Conns      int            `json:"conns"`
	Duration   float64        `json:"duration_s"` // first post to the last final answer
	Posted     int            `json:"posted"`
	Queued     int            `json:"queued"` // answered 202
	Accepted   int            `json:"accepted"`
	Unexpected int            `json:"unexpected_errors"`
	Errors     map[string]int `json:"errors_by_code"`
	Throughput float64        `json:"throughput_per_s"` // accepted per second of Duration
	// Post latency: POST to its 202 (durable in the outbox).
	PostP50 float64 `json:"post_p50_ms"`
	PostP95 float64 `json:"post_p95_ms"`
	PostP99 float64 `json:"post_p99_ms"`
	// Accepted latency: POST to the hub's verified receipt recorded
	// (the message's updated_at when it became accepted).
	AcceptedP50 float64 `json:"accepted_p50_ms"`
	AcceptedP95 float64 `json:"accepted_p95_ms"`
	AcceptedP99 float64 `json:"accepted_p99_ms"`
	StealPct    float64 `json:"machine_steal_pct"`
	EdgeCPU     float64 `json:"edge_cpu_s"`
	EdgeCPUPer  float64 `json:"edge_cpu_us_per_msg"` // per accepted message
	// Floor: sign the message, seal it to the hub, verify the hub's
	// receipt, per message, in this process (median of three passes).
	Floor      float64 `json:"edge_floor_us_per_msg"`
	FloorRatio float64 `json:"edge_floor_ratio"`
	PeakRSS    float64 `json:"edge_peak_rss_mb"`
	// CommitsPer is the edge store's write transactions per accepted
	// message (0 when the edge does not report them).
	CommitsPer float64 `json:"edge_commits_per_msg"`
}

// DemoEdgeBody is the demo verification request (UN-UNICEF to KZ-MJ) as a
// local system posts it to its edge.
const DemoEdgeBody = `{"to": "KZ-MJ", "type": "identity.verification.request", "purpose": "identity-verification", "subject": {"ref": "S-0001", "names": {"primary": "ABENOVA", "secondary": "AIGERIM"}, "birth_date": "2018-04-12", "birth_date_basis": "document", "sex": "F", "nationality_claimed": "KAZ", "relationships": [{"relation": "mother", "ref": "S-0002"}], "location": {"country": "SYR", "facility_type": "camp"}, "biometrics": {"modality": "face", "template_ref": "tpl-77", "mode": "1:1", "dpia_id": "DPIA-2026-04"}}, "record": {"requested_assertions": ["identity_match", "nationality_confirmed"]}}`

type edgePost struct {
	id     string
	sentAt time.Time
	lat    time.Duration
	code   string // "" queued (202)
}

// RunEdge posts plain JSON to an edge, waits until every queued message
// has its final answer, and measures the edge against its floor.
func RunEdge(ctx context.Context, o EdgeOptions) (*EdgeReport, error) {
	if o.Body == nil {
		o.Body = []byte(DemoEdgeBody)
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Conns <= 0 {
		o.Conns = 8
		if o.Rate > 0 {
			o.Conns = 64
		}
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Minute
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// Keep-alive connections, as many as posts in flight: a local system
	// that opened a connection per post would measure its dials.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: o.Conns, MaxConnsPerHost: o.Conns, IdleConnTimeout: 90 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	final0, err := edgeFinals(ctx, o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("bench: edge metrics: %w", err)
	}
	// Warm-up outside the measurement: the edge reads the hub's keys on
	// its first message.
	for range 3 {
		if p := postEdge(ctx, hc, o, time.Now()); p.code != "" {
			return nil, fmt.Errorf("bench: warm-up post: %s", p.code)
		}
	}
	if err := waitFinals(ctx, o.Metrics, final0.total()+3, o.Settle); err != nil {
		return nil, fmt.Errorf("bench: warm-up: %w", err)
	}
	if final0, err = edgeFinals(ctx, o.Metrics); err != nil {
		return nil, err
	}

	rep := &EdgeReport{Machine: machine(), Cores: runtime.NumCPU(), Conns: o.Conns, Errors: map[string]int{}, Mode: "max"}
	if o.Rate > 0 {
		rep.Mode = fmt.Sprintf("rate %d/s", o.Rate)
	}
	var rss *rssSampler
	var cpu0 time.Duration
	mach0, machErr := machineCPU()
	if o.PID > 0 {
		if cpu0, err = ProcCPU(o.PID); err != nil {
			return nil, err
		}
		rss = sampleRSS(o.PID, 250*time.Millisecond)
	}
	logf("posting to the edge for %s (%s, %d concurrent)...", o.Duration, rep.Mode, o.Conns)
	start := time.Now()
	posts := driveEdge(ctx, hc, o, start)
	for _, p := range posts {
		if p.code == "" {
			rep.Queued++
		} else {
			rep.Errors[p.code]++
			rep.Unexpected++
		}
	}
	rep.Posted = len(posts)
	logf("waiting for the hub's answers to %d queued messages...", rep.Queued)
	werr := waitFinals(ctx, o.Metrics, final0.total()+rep.Queued, o.Settle)
	elapsed := time.Since(start)
	if mach1, err := machineCPU(); err == nil && machErr == nil {
		rep.StealPct = stealPct(mach0, mach1)
	}
	final1, err := edgeFinals(ctx, o.Metrics)
	if err != nil {
		return nil, err
	}
	rep.Accepted = final1.accepted - final0.accepted
	if rep.Accepted > 0 {
		rep.CommitsPer = float64(final1.commits-final0.commits) / float64(rep.Accepted)
	}
	if n := final1.other - final0.other; n > 0 {
		rep.Errors["refused or expired"] += n
		rep.Unexpected += n
	}
	if werr != nil {
		rep.Errors["no final answer"] += rep.Queued - (final1.total() - final0.total())
		rep.Unexpected += rep.Queued - (final1.total() - final0.total())
	}
	if o.PID > 0 {
		cpu1, err := ProcCPU(o.PID)
		if err != nil {
			return nil, err
		}
		rep.EdgeCPU = (cpu1 - cpu0).Seconds()
		s, _ := rss.stop()
		rep.PeakRSS = s.peak
		if rep.Accepted > 0 {
			rep.EdgeCPUPer = rep.EdgeCPU * 1e6 / float64(rep.Accepted)
		}
	}
	rep.Duration = elapsed.Seconds()
	rep.Throughput = float64(rep.Accepted) / elapsed.Seconds()

	// Latencies, read after the measurement (the reads cost the edge).
	var postLat, accLat []float64
	for _, p := range posts {
		if p.code != "" {
			continue
		}
		postLat = append(postLat, float64(p.lat)/float64(time.Millisecond))
		if at, ok := acceptedAt(ctx, hc, o, p.id); ok {
			accLat = append(accLat, float64(at.Sub(p.sentAt))/float64(time.Millisecond))
		}
	}
	sort.Float64s(postLat)
	sort.Float64s(accLat)
	rep.PostP50, rep.PostP95, rep.PostP99 = quantile(postLat, .5), quantile(postLat, .95), quantile(postLat, .99)
	rep.AcceptedP50, rep.AcceptedP95, rep.AcceptedP99 = quantile(accLat, .5), quantile(accLat, .95), quantile(accLat, .99)

	logf("measuring the edge's floor...")
	n := o.FloorN
	if n <= 0 {
		n = 2000
	}
	if rep.Floor, err = measureEdgeFloor(o, min(n, max(rep.Accepted, 30))); err != nil {
		return nil, err
	}
	if rep.Floor > 0 && rep.EdgeCPUPer > 0 {
		rep.FloorRatio = rep.EdgeCPUPer / rep.Floor
	}
	return rep, nil
}

func postEdge(ctx context.Context, hc *http.Client, o EdgeOptions, sentAt time.Time) edgePost {
	p := edgePost{sentAt: sentAt}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, o.API+"/v1/outbox", bytes.NewReader(o.Body))
	if err != nil {
		p.code = "request"
		return p
	}
	req.Header.Set("Content-Type", "application/json")
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := hc.Do(req)
	p.lat = time.Since(sentAt)
	if err != nil {
		p.code = "transport"
		return p
	}
	defer resp.Body.Close()
	var a struct {
		ID   string `json:"id"`
		Code string `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&a)
	if resp.StatusCode != http.StatusAccepted {
		p.code = fmt.Sprintf("%d %s", resp.StatusCode, a.Code)
		return p
	}
	p.id = a.ID
	return p
}

// driveEdge posts until the duration ends; at a rate, a post's latency
// counts from when it was due (coordinated omission).
func driveEdge(ctx context.Context, hc *http.Client, o EdgeOptions, start time.Time) []edgePost {
	ctx, cancel := context.WithDeadline(ctx, start.Add(o.Duration))
	defer cancel()
	jobs := make(chan time.Time, o.Conns)
	var mu sync.Mutex
	var out []edgePost
	var wg sync.WaitGroup
	for range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for due := range jobs {
				if o.Rate <= 0 {
					due = time.Now()
				}
				p := postEdge(ctx, hc, o, due)
				mu.Lock()
				out = append(out, p)
				mu.Unlock()
			}
		}()
	}
loop:
	for n := 0; ; n++ {
		due, ok := pace(ctx, start, o.Rate, n)
		if !ok {
			break loop
		}
		select {
		case <-ctx.Done():
			break loop
		case jobs <- due:
		}
	}
	close(jobs)
	wg.Wait()
	return out
}

type finals struct{ accepted, other, commits int }

func (f finals) total() int { return f.accepted + f.other }

// edgeFinals reads the edge's final answers so far from its /metrics.
func edgeFinals(ctx context.Context, url string) (finals, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return finals{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return finals{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return finals{}, err
	}
	var f finals
	seen := false
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "xborder_edge_store_commits_total "); ok {
			f.commits, _ = strconv.Atoi(strings.TrimSpace(v))
			continue
		}
		rest, ok := strings.CutPrefix(l, "xborder_edge_outbox_final_total{status=\"")
		if !ok {
			continue
		}
		status, v, _ := strings.Cut(rest, "\"} ")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return finals{}, fmt.Errorf("metrics line %q", l)
		}
		seen = true
		if status == "accepted" {
			f.accepted = n
		} else {
			f.other += n
		}
	}
	if !seen {
		return finals{}, errors.New("no xborder_edge_outbox_final_total in the edge's /metrics")
	}
	return f, nil
}

// waitFinals waits until the edge counts want final answers. It asks every
// 250 ms: a scrape costs the edge a store read and a probe write.
func waitFinals(ctx context.Context, url string, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		f, err := edgeFinals(ctx, url)
		if err == nil && f.total() >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d messages got their final answer within %s", f.total(), want, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// acceptedAt reads when a message became accepted (its updated_at).
func acceptedAt(ctx context.Context, hc *http.Client, o EdgeOptions, id string) (time.Time, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.API+"/v1/outbox/"+id, nil)
	if err != nil {
		return time.Time{}, false
	}
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return time.Time{}, false
	}
	defer resp.Body.Close()
	var st struct {
		Status    string `json:"status"`
		UpdatedAt string `json:"updated_at"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil || st.Status != "accepted" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, st.UpdatedAt)
	return t, err == nil
}

// measureEdgeFloor measures, in this process and on one goroutine, what an
// edge cannot avoid for one message: sign it with the participant's key,
// seal it to the hub's key, and verify the hub's receipt. The messages are
// made first, as the edge would sign them; microseconds of this process's
// CPU (GC included) per message, the median of floorPasses passes.
func measureEdgeFloor(o EdgeOptions, n int) (float64, error) {
	fail := func(err error) (float64, error) { return 0, fmt.Errorf("bench: edge floor: %w", err) }
	sign := o.Sign
	if sign == nil {
		k, err := envelope.GenerateP256(envelope.UseSig)
		if err != nil {
			return fail(err)
		}
		sign = k
	}
	enc := o.HubEnc
	if enc == nil {
		k, err := envelope.GenerateP256(envelope.UseEnc)
		if err != nil {
			return fail(err)
		}
		enc = k.Public()
	}
	hub, err := envelope.GenerateP256(envelope.UseSig)
	if err != nil {
		return fail(err)
	}
	var body map[string]any
	if err := json.Unmarshal(o.Body, &body); err != nil {
		return fail(err)
	}
	from := o.Participant
	if from == "" {
		from = "UN-UNICEF"
	}
	payloads := make([][]byte, n)
	receipts := make([][]byte, n)
	now := time.Now()
	for i := range n {
		id := uuid.NewString()
		body["id"], body["from"], body["iat"], body["exp"] = id, from, now.Unix(), now.Unix()+3600
		if payloads[i], err = json.Marshal(body); err != nil {
			return fail(err)
		}
		rc, _ := json.Marshal(map[string]any{"id": id, "from": from, "to": body["to"], "envelope_sha256": strings.Repeat("0", 64),
			"accepted_at": now.UTC().Format(time.RFC3339), "decision_id": uuid.NewString(), "policy_version": "sha256:" + strings.Repeat("0", 64)})
		if receipts[i], err = envelope.Sign(rc, hub, envelope.TypReceipt); err != nil {
			return fail(err)
		}
	}
	kf := audit.KeyFunc(hub.Public())
	return medianOfPasses(n, func(m int) (float64, error) {
		runtime.GC()
		c0 := selfCPU()
		for i := range m {
			jws, err := envelope.Sign(payloads[i], sign, envelope.TypMessage)
			if err != nil {
				return fail(err)
			}
			if _, err := envelope.Encrypt(jws, enc); err != nil {
				return fail(err)
			}
			if _, _, err := envelope.Verify(receipts[i], envelope.TypReceipt, kf, envelope.Profile{}); err != nil {
				return fail(err)
			}
		}
		return float64((selfCPU() - c0).Microseconds()) / float64(m), nil
	})
}

// Table prints the report for a reader.
func (r *EdgeReport) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "machine\t%s, %d cores\n", r.Machine, r.Cores)
	fmt.Fprintf(tw, "load (edge's local API)\t%s, %d concurrent, %.1f s to the last answer\n", r.Mode, r.Conns, r.Duration)
	fmt.Fprintf(tw, "posted / queued (202) / accepted by the hub\t%d / %d / %d\n", r.Posted, r.Queued, r.Accepted)
	fmt.Fprintf(tw, "unexpected errors\t%d\n", r.Unexpected)
	printCodes(tw, r.Errors)
	fmt.Fprintf(tw, "machine CPU steal during the load\t%.1f %%\n", r.StealPct)
	fmt.Fprintf(tw, "throughput (accepted)\t%.0f msg/s\n", r.Throughput)
	fmt.Fprintf(tw, "POST to 202 p50 / p95 / p99\t%.2f / %.2f / %.2f ms\n", r.PostP50, r.PostP95, r.PostP99)
	fmt.Fprintf(tw, "POST to accepted p50 / p95 / p99\t%.2f / %.2f / %.2f ms\n", r.AcceptedP50, r.AcceptedP95, r.AcceptedP99)
	fmt.Fprintf(tw, "edge CPU per accepted message\t%.0f µs\n", r.EdgeCPUPer)
	fmt.Fprintf(tw, "edge floor (sign + seal + verify the receipt)\t%.0f µs\n", r.Floor)
	fmt.Fprintf(tw, "edge floor ratio\t%.2f\n", r.FloorRatio)
	fmt.Fprintf(tw, "edge store commits per accepted message\t%.2f\n", r.CommitsPer)
	fmt.Fprintf(tw, "edge RSS peak\t%.1f MiB\n", r.PeakRSS)
	tw.Flush()
}
