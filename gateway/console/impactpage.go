package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/xborder/xborder/gateway/impact"
	"github.com/xborder/xborder/gateway/policy"
	"github.com/xborder/xborder/gateway/policy/worker"
)

// job is one candidate's comparison with the policy in force.
type job struct {
	ID       string
	By       string
	Started  time.Time
	File     string
	Seed     int64
	Variants int

	Done  bool
	Stage string
	Err   string
	Live  string
	// Files are the candidate's, for a shadow run (a worker of its own
	// compiles them again).
	Files     fs.FS `json:"-"`
	Version   string
	Tests     *policy.TestReport
	Scenarios []impact.ScenarioResult
	ScenRep   impact.Report
	Synthetic impact.Report
	Finished  time.Time
}

const maxJobs = 8

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type impactFormData struct {
	Jobs     []*job
	Variants int
	Running  bool
}

func (c *Console) impactForm(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	d := impactFormData{Variants: c.o.Variants, Running: c.running}
	for i := len(c.jobs) - 1; i >= 0; i-- {
		d.Jobs = append(d.Jobs, c.jobs[i])
	}
	c.mu.Unlock()
	c.render(w, r, http.StatusOK, "impact", "Impact of a candidate", "impact", d)
}

func (c *Console) impactStart(w http.ResponseWriter, r *http.Request) {
	f, fh, err := r.FormFile("candidate")
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "Choose a candidate: a .tar.gz of the policy folder, or a data.json.")
		return
	}
	upload, err := io.ReadAll(io.LimitReader(f, impact.MaxUpload+1))
	f.Close()
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "The candidate could not be read.")
		return
	}
	variants := c.o.Variants
	if v, err := strconv.Atoi(r.PostFormValue("variants")); err == nil && v >= 0 && v <= 100000 {
		variants = v
	}
	seed := time.Now().UnixNano() % 1000000
	if s, err := strconv.ParseInt(r.PostFormValue("seed"), 10, 64); err == nil {
		seed = s
	}
	live := c.o.Policy.Current()
	// One at a time, checked before the upload is even unpacked: unpacking
	// is work an upload controls, and it must not run beside a comparison.
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		c.fail(w, r, http.StatusConflict, "A comparison is already running; wait for it to finish.")
		return
	}
	c.running = true
	c.mu.Unlock()
	fsys, err := impact.Candidate(live.FS(), upload)
	if err != nil {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
		c.fail(w, r, http.StatusUnprocessableEntity, err.Error())
		return
	}
	j := &job{ID: newID(), By: officer(r), Started: c.o.Now().UTC(), File: fh.Filename, Seed: seed, Variants: variants,
		Stage: "compiling", Live: live.Version}
	c.mu.Lock()
	c.jobs = append(c.jobs, j)
	if len(c.jobs) > maxJobs {
		c.jobs = c.jobs[len(c.jobs)-maxJobs:]
	}
	c.mu.Unlock()
	c.log.Info("console: impact run started", "officer", j.By, "job", j.ID, "variants", variants, "seed", seed)
	go c.runJob(j, live, fsys)
	http.Redirect(w, r, Prefix+"impact/"+j.ID, http.StatusSeeOther)
}

func (c *Console) setStage(j *job, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
}

// runJob compares a candidate with the policy in force. Everything of
// the candidate — compiling it, its tests and scenarios, its decisions —
// runs in a worker process of its own (gateway/policy/worker): a built-in
// that never returns, or a policy that fills memory, ends that process
// and this job, never the gateway; the job is then over, and the next
// upload runs.
func (c *Console) runJob(j *job, live *policy.Bundle, fsys fs.FS) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	defer func() {
		c.mu.Lock()
		j.Done, j.Finished, c.running = true, c.o.Now().UTC(), false
		c.mu.Unlock()
		c.log.Info("console: impact run finished", "job", j.ID, "error", j.Err != "")
	}()
	fail := func(err error) {
		if errors.Is(err, worker.ErrDied) {
			c.log.Warn("console: the candidate's worker was stopped", "job", j.ID, "error", err)
		}
		c.setStage(j, func() { j.Err = err.Error() })
	}
	w, err := worker.Start(ctx, c.o.Worker)
	if err != nil {
		fail(err)
		return
	}
	defer w.Close()
	cand, err := w.Load(ctx, fsys)
	if err != nil {
		fail(err)
		return
	}
	c.setStage(j, func() {
		j.Version, j.Stage = cand.Version, "running the candidate's tests and scenarios"
	})
	rep, err := cand.Test(ctx)
	if err != nil {
		fail(err)
		return
	}
	c.setStage(j, func() { j.Tests, j.Stage = &rep, "comparing on the scenarios" })
	srep, scen, err := impact.CompareScenarios(ctx, live, cand)
	if err != nil {
		fail(err)
		return
	}
	c.setStage(j, func() {
		j.ScenRep, j.Scenarios, j.Stage = srep, scen, "comparing on "+itoa(j.Variants)+" generated inputs"
	})
	reg := c.o.Registry.Load()
	gen, err := c.o.Inputs(j.Seed, live, impact.Parties(reg.Participants()), c.o.Now())
	if err != nil {
		fail(err)
		return
	}
	synth, err := impact.Compare(ctx, live, cand, gen, j.Variants, 0)
	if err != nil {
		fail(err)
		return
	}
	c.setStage(j, func() { j.Synthetic, j.Files, j.Stage = synth, fsys, "done" })
}

func (c *Console) findJob(id string) *job {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range c.jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

type jobView struct {
	J       job
	Shadow  *impact.ShadowReport
	Running bool
}

func (c *Console) impactJob(w http.ResponseWriter, r *http.Request) {
	j := c.findJob(r.PathValue("id"))
	if j == nil {
		c.fail(w, r, http.StatusNotFound, "No such comparison (only the last few are kept).")
		return
	}
	c.mu.Lock()
	v := jobView{J: *j}
	c.mu.Unlock()
	c.render(w, r, http.StatusOK, "job", "Impact of a candidate", "impact", v)
}

type diffsData struct {
	Back   string
	Title  string
	Source string
	By     string
	Key    string
	Diffs  []impact.Diff
	Total  int
}

// impactDiffs lists the differences of one group (drill-down).
func (c *Console) impactDiffs(w http.ResponseWriter, r *http.Request) {
	j := c.findJob(r.PathValue("id"))
	if j == nil {
		c.fail(w, r, http.StatusNotFound, "No such comparison.")
		return
	}
	c.mu.Lock()
	rep := j.Synthetic
	if r.URL.Query().Get("source") == "scenario" {
		rep = j.ScenRep
	}
	c.mu.Unlock()
	d := drill(rep, r)
	d.Back = Prefix + "impact/" + j.ID
	c.render(w, r, http.StatusOK, "diffs", "Changed decisions", "impact", d)
}

func drill(rep impact.Report, r *http.Request) diffsData {
	q := r.URL.Query()
	d := diffsData{Source: rep.Source, By: q.Get("by"), Key: q.Get("key")}
	for _, x := range rep.Diffs {
		var k string
		switch d.By {
		case "purpose":
			k = x.Purpose
		case "roles":
			k = x.Roles
		case "rules":
			k = x.RuleChange()
		default:
			k = d.Key
		}
		if k != d.Key {
			continue
		}
		d.Total++
		if len(d.Diffs) < 500 {
			d.Diffs = append(d.Diffs, x)
		}
	}
	return d
}
