package console

import (
	"context"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/policy"
)

type chainInfo struct {
	Replica    string
	Count      uint64
	Head       string
	Checkpoint *audit.Checkpoint
}

type verifyResult struct {
	At       time.Time
	OK       bool
	Error    string
	Replicas []audit.ReplicaSummary
	By       string
}

type queueRow struct {
	Recipient    string
	Waiting      int
	DeadLettered int
}

type window struct {
	Label     string
	Total     counts
	ByPurpose template.HTML
	ByRule    template.HTML
	Purposes  []Row
	Rules     []Row
}

type overviewData struct {
	Status    policy.Status
	Windows   []window
	Queues    []queueRow
	QueueErr  string
	Chains    []chainInfo
	AuditErr  string
	Verify    *verifyResult
	Expiring  []CertInfo
	Suspended []string
	Now       time.Time
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	now := c.o.Now().UTC()
	d := overviewData{Status: c.o.Policy.Status(), Now: now}
	if err := c.stats.refresh(ctx, now); err != nil {
		d.AuditErr = "the audit log could not be read"
		c.log.Error("console: audit read", "error", err)
	}
	for _, win := range []struct {
		label string
		d     time.Duration
	}{{"Last 24 hours", 24 * time.Hour}, {"Last 7 days", 7 * 24 * time.Hour}} {
		p, ru, total := c.stats.window(now, win.d)
		d.Windows = append(d.Windows, window{Label: win.label, Total: total, Purposes: p, Rules: ru,
			ByPurpose: barChart(win.label+": decisions by purpose", p), ByRule: barChart(win.label+": decisions by rule", ru)})
	}
	queues := map[string]*queueRow{}
	row := func(id string) *queueRow {
		q := queues[id]
		if q == nil {
			q = &queueRow{Recipient: id}
			queues[id] = q
		}
		return q
	}
	if c.o.Depths != nil {
		if m, err := c.o.Depths(ctx); err == nil {
			for id, n := range m {
				row(id).Waiting = n
			}
		} else {
			d.QueueErr = "the store could not be read"
		}
	}
	if c.o.DeadLetters != nil {
		if dl, err := c.o.DeadLetters(ctx); err == nil {
			for _, x := range dl {
				row(x.Recipient).DeadLettered++
			}
		} else {
			d.QueueErr = "the store could not be read"
		}
	}
	for _, q := range queues {
		if q.Waiting > 0 || q.DeadLettered > 0 {
			d.Queues = append(d.Queues, *q)
		}
	}
	sort.Slice(d.Queues, func(i, j int) bool { return d.Queues[i].Recipient < d.Queues[j].Recipient })
	if replicas, err := c.o.Audit.Replicas(ctx); err == nil {
		for _, rep := range replicas {
			ci := chainInfo{Replica: rep}
			ci.Count, ci.Head, _ = c.o.Audit.Head(ctx, rep)
			if cps, err := c.o.Audit.Checkpoints(ctx, rep); err == nil && len(cps) > 0 {
				last := cps[len(cps)-1]
				ci.Checkpoint = &last
			}
			d.Chains = append(d.Chains, ci)
		}
	} else {
		d.AuditErr = "the audit log could not be read"
	}
	c.mu.Lock()
	d.Verify = c.verify
	c.mu.Unlock()
	reg := c.o.Registry.Load()
	d.Expiring = c.o.Certificates.expiring(reg, now, 30*24*time.Hour)
	if reg != nil {
		for _, p := range reg.Participants() {
			if p.Suspended {
				d.Suspended = append(d.Suspended, p.ID)
			}
		}
	}
	c.render(w, r, http.StatusOK, "overview", "Overview", "overview", d)
}

// verifyAudit checks every chain now and shows the result on the overview.
func (c *Console) verifyAudit(w http.ResponseWriter, r *http.Request) {
	res := &verifyResult{At: c.o.Now().UTC(), By: officer(r)}
	if c.o.VerifyAudit == nil {
		res.Error = "verification is not available here"
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
		sum, err := c.o.VerifyAudit(ctx)
		cancel()
		if err != nil {
			res.Error = err.Error()
		} else {
			res.OK, res.Replicas = true, sum.Replicas
		}
	}
	c.log.Info("console: audit verified", "officer", res.By, "ok", res.OK)
	c.mu.Lock()
	c.verify = res
	c.mu.Unlock()
	http.Redirect(w, r, Prefix+"#audit", http.StatusSeeOther)
}

func officer(r *http.Request) string {
	id, _ := r.Context().Value(officerKey{}).(string)
	return id
}
