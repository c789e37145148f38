// Package bench is the engine of `xborder bench`: it pre-seals distinct
// envelopes for a mix of the demo flows, drives a running gateway with them
// over mTLS keep-alive connections (at a fixed rate or flat out), and
// measures throughput, latency, errors, the gateway's CPU per accepted
// message and its RSS (from /proc), next to the cryptographic floor measured
// in the same run (the open, verify, sign and seal every message needs, done
// in-process on the same messages).
package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/xborder/xborder/gateway/client"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/trust"
)

// Flow is one kind of demo exchange in the mix.
type Flow struct {
	Name    string
	From    string
	To      string
	Type    string
	Purpose string
	Body    string // JSON object: subject, record, consent
	Weight  int
	// Deny marks a flow the policy refuses on purpose (403 policy_denied
	// is its expected answer, not an error).
	Deny bool
}

// DemoFlows is the default mix: the README walkthrough's verification
// request and referral (allowed), and a border-screening request about a
// child (denied by R6).
func DemoFlows() []Flow {
	const verify = `{"subject": {"ref": "S-0001", "names": {"primary": "ABENOVA", "secondary": "AIGERIM"}, "birth_date": "2018-04-12", "birth_date_basis": "document", "sex": "F", "nationality_claimed": "KAZ", "relationships": [{"relation": "mother", "ref": "S-0002"}], "location": {"country": "SYR", "facility_type": "camp"}, "biometrics": {"modality": "face", "template_ref": "tpl-77", "mode": "1:1", "dpia_id": "DPIA-2026-04"}}, "record": {"requested_assertions": ["identity_match", "nationality_confirmed"]}}`
	const referral = `{"subject": {"ref": "S-0001", "names": {"primary": "ABENOVA", "secondary": "AIGERIM"}, "birth_date": "2018-04-12", "birth_date_basis": "document", "sex": "F", "nationality_claimed": "KAZ", "location": {"country": "KAZ", "facility_type": "family"}}, "record": {"service_type": "mhpss", "priority": "high", "needs": ["psychosocial-support", "schooling"], "psychosocial": {"assessment": "sleep problems"}, "allegations": {"summary": "not for this recipient"}}, "consent": {"id": "C-2026-001", "basis": "consent", "given_by": "representative", "representative_relation": "grandmother", "child_assent": "yes", "recipients": ["UN-UNICEF"], "purposes": ["rehabilitation-referral"], "obtained_at": "2026-10-01T09:00:00Z", "expires_at": "2030-06-01T00:00:00Z"}}`
	return []Flow{
		{Name: "verify-request", From: "UN-UNICEF", To: "KZ-MJ", Type: "identity.verification.request", Purpose: "identity-verification", Body: verify, Weight: 4},
		{Name: "referral", From: "KZ-MTSZN", To: "UN-UNICEF", Type: "referral", Purpose: "rehabilitation-referral", Body: referral, Weight: 4},
		{Name: "border-screening-child", From: "KZ-MVD", To: "UZ-MVD", Type: "identity.verification.request", Purpose: "border-screening", Body: verify, Weight: 2, Deny: true},
	}
}

// Options configure one load run.
type Options struct {
	Base        string // https://127.0.0.1:PORT of the exchange API
	PKI         string // participants' material (<PKI>/<ID>/...) and ca.crt
	GatewayKeys string // the gateway's sign.jwk and enc.jwk, for the floor
	PID         int    // the gateway's process, for /proc (0: not measured)

	Rate     int           // messages per second; 0: flat out
	Duration time.Duration // how long to send
	Messages int           // envelopes to pre-seal (0: enough for Rate×Duration, or 20000 flat out)
	Conns    int           // concurrent requests (0: 8 flat out, 64 at a rate)
	Flows    []Flow        // nil: DemoFlows
	FloorN   int           // messages for the floor (0: up to 2000)
	// Policies is the policy the gateway serves, for the decision floor
	// (nil: no decision floor is measured).
	Policies fs.FS
	// Drain makes the recipients pull and acknowledge their inboxes while
	// the load runs, as they would in production (otherwise deliveries pile
	// up in the store, and the mapped store file in the RSS).
	Drain bool
	// Metrics is the gateway's Prometheus endpoint (http://…/metrics), for
	// its live heap after GC (go_gc_heap_live_bytes) at one fifth of the run
	// and at its end ("": not measured).
	Metrics string
	Log     func(format string, args ...any)
}

// drainAcks is how many acknowledgements one draining recipient has in
// flight.
const drainAcks = 8

// recipientsOf lists the recipients of the allowed flows.
func recipientsOf(flows []Flow) []string {
	if flows == nil {
		flows = DemoFlows()
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range flows {
		if !f.Deny && !seen[f.To] {
			seen[f.To] = true
			out = append(out, f.To)
		}
	}
	return out
}

// Report is what a run measured; the JSON keys are the issue's.
type Report struct {
	Machine    string         `json:"machine"`
	Cores      int            `json:"cores"`
	Mode       string         `json:"mode"` // "rate 500/s" or "max"
	Conns      int            `json:"conns"`
	Duration   float64        `json:"duration_s"`
	Sent       int            `json:"sent"`
	Accepted   int            `json:"accepted"`
	Denied     int            `json:"denied"` // intended denials
	Unexpected int            `json:"unexpected_errors"`
	Throughput float64        `json:"throughput_per_s"`
	P50        float64        `json:"p50_ms"`
	P95        float64        `json:"p95_ms"`
	P99        float64        `json:"p99_ms"`
	Max        float64        `json:"max_ms"`
	Errors     map[string]int `json:"errors_by_code"`
	// EnvelopeBytes is the mean size of a sent envelope.
	EnvelopeBytes int `json:"envelope_bytes"`

	// StealPct is the share of the machine's CPU time the hypervisor gave
	// to other guests while the load ran (/proc/stat): on shared cores,
	// runs with a high steal are not comparable with quiet ones.
	StealPct float64 `json:"machine_steal_pct"`

	GatewayCPU      float64 `json:"gateway_cpu_s"`
	GatewayCPUPerOK float64 `json:"gateway_cpu_us_per_msg"` // per accepted message
	// Floor: open+verify of every sent message plus sign+seal of each
	// accepted one, per accepted message, in this process.
	Floor      float64 `json:"crypto_floor_us_per_msg"`
	FloorRatio float64 `json:"floor_ratio"`
	// DecisionFloor: the embedded policy engine deciding every sent
	// message, in this process, quiet, per accepted message. WorkFloor =
	// Floor + DecisionFloor is what the gateway cannot avoid;
	// WorkFloorRatio = GatewayCPUPerOK / WorkFloor.
	DecisionFloor  float64 `json:"decision_floor_us_per_msg"`
	WorkFloor      float64 `json:"work_floor_us_per_msg"`
	WorkFloorRatio float64 `json:"work_floor_ratio"`
	PeakRSS        float64 `json:"peak_rss_mb"`
	StartRSS       float64 `json:"start_rss_mb"`
	EndRSS         float64 `json:"end_rss_mb"`
	RSSGrowth      float64 `json:"rss_growth_pct"` // last 10% of samples against the first 10%
	// Anonymous RSS (heap and stacks, no file mappings): the gateway's own memory.
	PeakAnonRSS   float64 `json:"peak_anon_rss_mb"`
	StartAnonRSS  float64 `json:"start_anon_rss_mb"`
	EndAnonRSS    float64 `json:"end_anon_rss_mb"`
	AnonRSSGrowth float64 `json:"anon_rss_growth_pct"`
	// The same growths from the second tenth of the run on (the working
	// set under load reached): what a leak would show.
	// The live heap after GC (runtime/metrics /gc/heap/live:bytes) around
	// one fifth of the run (minute 1 of a 5-minute run) and at its end: the
	// median of the samples taken from 15 to 25 % and from 90 to 100 % of
	// the run (one sample is whatever was in flight at the last GC).
	LiveHeapFifth       float64 `json:"live_heap_fifth_mb,omitempty"`
	LiveHeapEnd         float64 `json:"live_heap_end_mb,omitempty"`
	LiveHeapGrowth      float64 `json:"live_heap_growth_pct,omitempty"`
	SteadyRSSGrowth     float64 `json:"steady_rss_growth_pct"`
	SteadyAnonRSSGrowth float64 `json:"steady_anon_rss_growth_pct"`
	Drained             int     `json:"drained"` // deliveries pulled and acknowledged (with Drain)

	Policy *PolicyReport `json:"policy,omitempty"`
}

type sealed struct {
	flow int
	body []byte
}

type result struct {
	lat  time.Duration
	code string // "" accepted
	sent bool
}

// Run pre-seals the envelopes, drives the gateway, then measures the floor.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Flows == nil {
		o.Flows = DemoFlows()
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Messages <= 0 {
		if o.Rate > 0 {
			o.Messages = int(float64(o.Rate)*o.Duration.Seconds()) + o.Rate/10 + 1
		} else {
			o.Messages = 20000
		}
	}
	if o.Conns <= 0 {
		o.Conns = 8
		if o.Rate > 0 {
			o.Conns = 64
		}
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}

	clients := map[string]*client.Client{}
	for _, f := range o.Flows {
		if clients[f.From] != nil {
			continue
		}
		id, err := client.LoadIdentity(o.PKI, f.From)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		c := client.New(o.Base, id)
		if _, _, err := c.GatewayKeys(ctx); err != nil {
			return nil, fmt.Errorf("bench: gateway keys: %w", err)
		}
		clients[f.From] = c
	}

	logf("sealing %d envelopes...", o.Messages)
	envs, err := seal(ctx, o, clients)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, e := range envs {
		size += len(e.body)
	}

	// Warm up the connections (and the gateway) outside the measurement.
	for _, c := range clients {
		for range 2 {
			if _, err := c.Do(ctx, http.MethodGet, "/v1/jwks", "", nil); err != nil {
				return nil, fmt.Errorf("bench: warm-up: %w", err)
			}
		}
	}

	rep := &Report{Machine: machine(), Cores: runtime.NumCPU(), Conns: o.Conns,
		Errors: map[string]int{}, EnvelopeBytes: size / max(len(envs), 1)}
	if o.Rate > 0 {
		rep.Mode = fmt.Sprintf("rate %d/s", o.Rate)
	} else {
		rep.Mode = "max"
	}

	var rss *rssSampler
	var cpu0 time.Duration
	// The machine's steal during the load: a figure measured while other
	// tenants took a fifth of the cores is not comparable with one that was
	// not, so the report says which it is.
	mach0, machErr := machineCPU()
	if o.PID > 0 {
		if cpu0, err = ProcCPU(o.PID); err != nil {
			return nil, err
		}
		rss = sampleRSS(o.PID, 250*time.Millisecond)
	}

	results := make([]result, len(envs))
	logf("sending for %s (%s, %d concurrent)...", o.Duration, rep.Mode, o.Conns)
	start := time.Now()
	var drained atomic.Int64
	dctx, stopDrain := context.WithCancel(ctx)
	var dwg sync.WaitGroup
	if o.Drain {
		for _, id := range recipientsOf(o.Flows) {
			me, err := client.LoadIdentity(o.PKI, id)
			if err != nil {
				stopDrain()
				return nil, err
			}
			rc := client.New(o.Base, me)
			dwg.Add(1)
			go func() {
				defer dwg.Done()
				for dctx.Err() == nil {
					ds, err := rc.Inbox(dctx, 100)
					if err != nil || len(ds) == 0 {
						select {
						case <-dctx.Done():
						case <-time.After(50 * time.Millisecond):
						}
						continue
					}
					// The page's acknowledgements go out drainAcks at a
					// time, as a recipient with a backlog would send them:
					// one after another, each waits for its own commit,
					// and a disk slow to sync caps the drain below the
					// rate it keeps up with.
					var awg sync.WaitGroup
					slots := make(chan struct{}, drainAcks)
					for _, d := range ds {
						slots <- struct{}{}
						if dctx.Err() != nil {
							break
						}
						awg.Add(1)
						go func() {
							defer awg.Done()
							// An acknowledgement sent is let finish, so
							// that the count is exact when the drain stops.
							if rc.Ack(context.WithoutCancel(dctx), d.DeliveryID) == nil {
								drained.Add(1)
							}
							<-slots
						}()
					}
					awg.Wait()
				}
			}()
		}
	}
	var heap *heapSampler
	if o.Metrics != "" {
		heap = sampleLiveHeap(ctx, o.Metrics, o.Duration, logf)
	}
	sent := drive(ctx, o, clients, envs, results, start)
	elapsed := time.Since(start)
	if heap != nil {
		rep.LiveHeapFifth, rep.LiveHeapEnd, rep.LiveHeapGrowth = heap.stop()
	}
	stopDrain()
	dwg.Wait()
	rep.Drained = int(drained.Load())

	if mach1, err := machineCPU(); err == nil && machErr == nil {
		rep.StealPct = stealPct(mach0, mach1)
	}
	if o.PID > 0 {
		cpu1, err := ProcCPU(o.PID)
		if err != nil {
			return nil, err
		}
		rep.GatewayCPU = (cpu1 - cpu0).Seconds()
		s, a := rss.stop()
		rep.PeakRSS, rep.StartRSS, rep.EndRSS, rep.RSSGrowth = s.peak, s.start, s.end, s.growth
		rep.PeakAnonRSS, rep.StartAnonRSS, rep.EndAnonRSS, rep.AnonRSSGrowth = a.peak, a.start, a.end, a.growth
		rep.SteadyRSSGrowth, rep.SteadyAnonRSSGrowth = s.steady, a.steady
	}

	lats := make([]float64, 0, sent)
	var acceptedIdx []int
	for i := range results[:sent] {
		r := results[i]
		if !r.sent {
			continue
		}
		rep.Sent++
		lats = append(lats, float64(r.lat)/float64(time.Millisecond))
		flow := o.Flows[envs[i].flow]
		switch {
		case r.code == "":
			rep.Accepted++
			acceptedIdx = append(acceptedIdx, i)
			if flow.Deny {
				rep.Errors["202 (expected a denial)"]++
				rep.Unexpected++
			}
		case flow.Deny && r.code == "403 policy_denied":
			rep.Denied++
			rep.Errors[r.code]++
		default:
			rep.Errors[r.code]++
			rep.Unexpected++
		}
	}
	rep.Duration = elapsed.Seconds()
	rep.Throughput = float64(rep.Sent) / elapsed.Seconds()
	sort.Float64s(lats)
	rep.P50, rep.P95, rep.P99 = quantile(lats, 0.50), quantile(lats, 0.95), quantile(lats, 0.99)
	if len(lats) > 0 {
		rep.Max = lats[len(lats)-1]
	}
	if rep.Accepted > 0 && o.PID > 0 {
		rep.GatewayCPUPerOK = rep.GatewayCPU * 1e6 / float64(rep.Accepted)
	}

	logf("measuring the crypto floor...")
	floor, err := measureFloor(o, envs[:sent], results[:sent])
	if err != nil {
		return nil, err
	}
	rep.Floor = floor
	if floor > 0 && rep.GatewayCPUPerOK > 0 {
		rep.FloorRatio = rep.GatewayCPUPerOK / floor
	}
	if o.Policies != nil {
		logf("measuring the decision floor...")
		if rep.DecisionFloor, err = measureDecisionFloor(ctx, o, envs[:sent], results[:sent]); err != nil {
			return nil, err
		}
		rep.WorkFloor = rep.Floor + rep.DecisionFloor
		if rep.WorkFloor > 0 && rep.GatewayCPUPerOK > 0 {
			rep.WorkFloorRatio = rep.GatewayCPUPerOK / rep.WorkFloor
		}
	}
	return rep, nil
}

// seal makes o.Messages distinct envelopes, cycling through the weighted
// flows. iat follows the time each envelope will be sent at the rate, so
// that a long run stays inside the gateway's clock-skew window.
func seal(ctx context.Context, o Options, clients map[string]*client.Client) ([]sealed, error) {
	var order []int
	for i, f := range o.Flows {
		for range max(f.Weight, 1) {
			order = append(order, i)
		}
	}
	bodies := make([]map[string]any, len(o.Flows))
	for i, f := range o.Flows {
		if err := json.Unmarshal([]byte(f.Body), &bodies[i]); err != nil {
			return nil, fmt.Errorf("bench: flow %s: %w", f.Name, err)
		}
	}
	base := time.Now().Add(-30 * time.Second)
	envs := make([]sealed, o.Messages)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(envs) || ctx.Err() != nil {
					return
				}
				fi := order[i%len(order)]
				f := o.Flows[fi]
				iat := base
				if o.Rate > 0 {
					iat = base.Add(time.Duration(float64(i) / float64(o.Rate) * float64(time.Second)))
				}
				msg := map[string]any{
					"id": uuid.NewString(), "type": f.Type, "from": f.From, "to": f.To,
					"purpose": f.Purpose, "legal_basis": "data-sharing agreement on file",
					"iat": iat.Unix(), "exp": iat.Add(50 * time.Minute).Unix(),
				}
				for k, v := range bodies[fi] {
					msg[k] = v
				}
				b, err := clients[f.From].Seal(ctx, msg)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("bench: seal: %w", err) })
					return
				}
				envs[i] = sealed{flow: fi, body: b}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return envs, ctx.Err()
}

// drive sends envelopes in order until the duration ends or they run out,
// and returns how many were taken. At a rate, a message's latency counts
// from the time it was due, so that a stalled gateway is not hidden
// (coordinated omission).
func drive(ctx context.Context, o Options, clients map[string]*client.Client, envs []sealed, results []result, start time.Time) int {
	ctx, cancel := context.WithDeadline(ctx, start.Add(o.Duration))
	defer cancel()
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, o.Conns)
	var wg sync.WaitGroup
	for range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				f := o.Flows[envs[j.i].flow]
				sentAt := j.due
				if o.Rate <= 0 {
					sentAt = time.Now()
				}
				// The request itself is not cut at the deadline: it is
				// allowed to finish (bounded by the client's timeout).
				resp, err := clients[f.From].Post(context.WithoutCancel(ctx), envs[j.i].body)
				r := result{lat: time.Since(sentAt), sent: true}
				switch {
				case err != nil:
					r.code = "transport"
					if errors.Is(err, context.DeadlineExceeded) {
						r.code = "timeout"
					}
				case resp.Status == http.StatusAccepted:
				default:
					r.code = fmt.Sprintf("%d %s", resp.Status, resp.Problem().Code)
				}
				results[j.i] = r
			}
		}()
	}
	n := 0
loop:
	for ; n < len(envs); n++ {
		due, ok := pace(ctx, start, o.Rate, n)
		if !ok {
			break loop
		}
		select {
		case <-ctx.Done():
			break loop
		case jobs <- job{i: n, due: due}:
		}
	}
	close(jobs)
	wg.Wait()
	return n
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Floor measures, in this process and on one goroutine, what the gateway
// cannot avoid for the messages sent: open the JWE and verify the JWS of
// each, and sign and seal a delivery for each accepted one. It returns
// microseconds of this process's CPU (GC included) per accepted message,
// the median of floorPasses passes.
func measureFloor(o Options, envs []sealed, results []result) (float64, error) {
	gwEnc, err := envelope.LoadPrivateJWK(filepath.Join(o.GatewayKeys, "enc.jwk"))
	if err != nil {
		return 0, fmt.Errorf("bench: floor: %w", err)
	}
	gwSig, err := envelope.LoadPrivateJWK(filepath.Join(o.GatewayKeys, "sign.jwk"))
	if err != nil {
		return 0, fmt.Errorf("bench: floor: %w", err)
	}
	signers := map[string]*envelope.PublicKey{}
	encTo := map[string]*envelope.PublicKey{}
	for _, f := range o.Flows {
		for _, id := range []string{f.From, f.To} {
			if signers[id] != nil {
				continue
			}
			s, err := envelope.LoadPrivateJWK(filepath.Join(o.PKI, id, "sign.jwk"))
			if err != nil {
				return 0, fmt.Errorf("bench: floor: %w", err)
			}
			e, err := envelope.LoadPrivateJWK(filepath.Join(o.PKI, id, "enc.jwk"))
			if err != nil {
				return 0, fmt.Errorf("bench: floor: %w", err)
			}
			signers[id], encTo[id] = s.Public(), e.Public()
		}
	}
	n := o.FloorN
	if n <= 0 {
		n = 2000
	}
	n = min(n, len(envs))
	if n == 0 {
		return 0, nil
	}
	keys := []*envelope.PrivateKey{gwEnc}
	return medianOfPasses(n, func(m int) (float64, error) {
		runtime.GC()
		accepted := 0
		c0 := selfCPU()
		for i := range m {
			f := o.Flows[envs[i].flow]
			jws, err := envelope.Decrypt(envs[i].body, keys, envelope.Profile{})
			if err != nil {
				return 0, fmt.Errorf("bench: floor: %w", err)
			}
			payload, _, err := envelope.Verify(jws, envelope.TypMessage, func(string) (*envelope.PublicKey, bool) { return signers[f.From], true }, envelope.Profile{})
			if err != nil {
				return 0, fmt.Errorf("bench: floor: %w", err)
			}
			if results[i].code != "" {
				continue
			}
			accepted++
			if _, err := envelope.Seal(payload, gwSig, envelope.TypDelivery, encTo[f.To]); err != nil {
				return 0, fmt.Errorf("bench: floor: %w", err)
			}
		}
		if accepted == 0 {
			return 0, nil
		}
		return float64((selfCPU() - c0).Microseconds()) / float64(accepted), nil
	})
}

// floorPasses: a floor is measured in passes over the first messages, and
// the median pass is the figure. On cores shared with other tenants one
// pass can meet a burst of steal or a neighbour's cache, and a floor
// measured once moved the work floor ratio with it.
const floorPasses = 3

// medianOfPasses runs pass floorPasses times on the first n/floorPasses
// messages (n in all, as one pass over n took) and returns the median.
func medianOfPasses(n int, pass func(m int) (float64, error)) (float64, error) {
	m := max(n/floorPasses, 1)
	figures := make([]float64, 0, floorPasses)
	for range floorPasses {
		f, err := pass(m)
		if err != nil {
			return 0, err
		}
		figures = append(figures, f)
	}
	slices.Sort(figures)
	return figures[len(figures)/2], nil
}

// measureDecisionFloor measures, in this process and on one goroutine, the
// embedded policy engine deciding each sent message (allowed and denied
// alike: the gateway decides every message), with the registry facts of
// its parties. It returns microseconds of this process's CPU (GC included)
// per accepted message, after a warm-up: the median of floorPasses passes.
func measureDecisionFloor(ctx context.Context, o Options, envs []sealed, results []result) (float64, error) {
	fail := func(err error) (float64, error) { return 0, fmt.Errorf("bench: decision floor: %w", err) }
	bundle, err := policy.Compile(ctx, o.Policies, policy.Options{Timeout: time.Minute})
	if err != nil {
		return fail(err)
	}
	reg, err := trust.Load(filepath.Join(o.PKI, "registry.yaml"))
	if err != nil {
		return fail(err)
	}
	gwEnc, err := envelope.LoadPrivateJWK(filepath.Join(o.GatewayKeys, "enc.jwk"))
	if err != nil {
		return fail(err)
	}
	n := o.FloorN
	if n <= 0 {
		n = 2000
	}
	n = min(n, len(envs))
	// The inputs are made first (opening is the crypto floor's part).
	inputs := make([]policy.Input, 0, n)
	accepted := 0
	for i := range n {
		jws, err := envelope.Decrypt(envs[i].body, []*envelope.PrivateKey{gwEnc}, envelope.Profile{})
		if err != nil {
			return fail(err)
		}
		parts := strings.Split(string(jws), ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return fail(err)
		}
		msg, err := envelope.ParseMessage(payload, time.Now(), envelope.Profile{DeferTimeCheck: true})
		if err != nil {
			return fail(err)
		}
		from, ok1 := reg.Participant(msg.From)
		to, ok2 := reg.Participant(msg.To)
		if !ok1 || !ok2 {
			return fail(fmt.Errorf("%s or %s is not registered", msg.From, msg.To))
		}
		inputs = append(inputs, policy.Input{Now: time.Now().UTC().Format(time.RFC3339), Message: msg.Raw,
			Sender: partyOf(from), Recipient: partyOf(to)})
		if results[i].code == "" {
			accepted++
		}
	}
	if accepted == 0 {
		return 0, nil
	}
	for i := range min(50, len(inputs)) { // warm-up
		if _, err := bundle.Decide(ctx, inputs[i]); err != nil {
			return fail(err)
		}
	}
	return medianOfPasses(len(inputs), func(m int) (float64, error) {
		accepted := 0
		for i := range m {
			if results[i].code == "" {
				accepted++
			}
		}
		if accepted == 0 {
			return 0, nil
		}
		runtime.GC()
		c0 := selfCPU()
		for _, in := range inputs[:m] {
			if _, err := bundle.Decide(ctx, in); err != nil {
				return fail(err)
			}
		}
		return float64((selfCPU() - c0).Microseconds()) / float64(accepted), nil
	})
}

func partyOf(p *trust.Participant) policy.Party {
	roles := p.Roles
	if roles == nil {
		roles = []string{}
	}
	return policy.Party{ID: p.ID, Kind: p.Kind, Country: p.Country, Roles: roles, Suspended: p.Suspended}
}

// printCodes lists a run's refusals by code, in code order.
func printCodes(w io.Writer, errs map[string]int) {
	codes := make([]string, 0, len(errs))
	for c := range errs {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "  %s\t%d\n", c, errs[c])
	}
}

// Table prints the report for a reader.
func (r *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "machine\t%s, %d cores\n", r.Machine, r.Cores)
	fmt.Fprintf(tw, "load\t%s, %d concurrent, %.1f s, %d B envelopes\n", r.Mode, r.Conns, r.Duration, r.EnvelopeBytes)
	fmt.Fprintf(tw, "sent / accepted / denied (intended)\t%d / %d / %d\n", r.Sent, r.Accepted, r.Denied)
	fmt.Fprintf(tw, "unexpected errors\t%d\n", r.Unexpected)
	printCodes(tw, r.Errors)
	fmt.Fprintf(tw, "machine CPU steal during the load\t%.1f %%\n", r.StealPct)
	fmt.Fprintf(tw, "throughput\t%.0f msg/s\n", r.Throughput)
	fmt.Fprintf(tw, "latency p50 / p95 / p99 / max\t%.2f / %.2f / %.2f / %.2f ms\n", r.P50, r.P95, r.P99, r.Max)
	fmt.Fprintf(tw, "gateway CPU per accepted message\t%.0f µs\n", r.GatewayCPUPerOK)
	fmt.Fprintf(tw, "crypto floor per accepted message\t%.0f µs\n", r.Floor)
	fmt.Fprintf(tw, "floor ratio\t%.2f\n", r.FloorRatio)
	if r.WorkFloor > 0 {
		fmt.Fprintf(tw, "decision floor per accepted message\t%.0f µs\n", r.DecisionFloor)
		fmt.Fprintf(tw, "work floor (crypto + decision)\t%.0f µs\n", r.WorkFloor)
		fmt.Fprintf(tw, "work floor ratio\t%.2f\n", r.WorkFloorRatio)
	}
	fmt.Fprintf(tw, "gateway RSS peak / start / end\t%.1f / %.1f / %.1f MiB (growth %.1f %%; %.1f %% after the first tenth)\n", r.PeakRSS, r.StartRSS, r.EndRSS, r.RSSGrowth, r.SteadyRSSGrowth)
	fmt.Fprintf(tw, "  anonymous (heap, stacks)\t%.1f / %.1f / %.1f MiB (growth %.1f %%; %.1f %% after the first tenth)\n", r.PeakAnonRSS, r.StartAnonRSS, r.EndAnonRSS, r.AnonRSSGrowth, r.SteadyAnonRSSGrowth)
	if r.LiveHeapEnd > 0 {
		fmt.Fprintf(tw, "live heap after GC, at a fifth / at the end (medians)\t%.1f / %.1f MiB (%+.1f %%)\n", r.LiveHeapFifth, r.LiveHeapEnd, r.LiveHeapGrowth)
	}
	if r.Drained > 0 {
		fmt.Fprintf(tw, "deliveries pulled and acked\t%d\n", r.Drained)
	}
	if p := r.Policy; p != nil {
		fmt.Fprintf(tw, "policy: embedded CPU per decision\t%.0f µs (latency %.0f µs)\n", p.EmbeddedCPU, p.EmbeddedWallUS)
		fmt.Fprintf(tw, "policy: OPA sidecar CPU per decision\t%.0f µs (OPA %.0f µs; latency %.0f µs)\n", p.SidecarCPU, p.SidecarOPACPU, p.SidecarWallUS)
		fmt.Fprintf(tw, "policy: sidecar / embedded\t%.2f (%d mismatches)\n", p.Ratio, p.Mismatches)
	}
	tw.Flush()
}

// pace waits until the n-th send is due at rate a second from start (at
// once when rate is 0: flat out) and returns when it was due; false when
// ctx ended first.
func pace(ctx context.Context, start time.Time, rate, n int) (time.Time, bool) {
	if rate <= 0 {
		return time.Now(), true
	}
	due := start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return due, false
		case <-t.C:
		}
	}
	return due, true
}
