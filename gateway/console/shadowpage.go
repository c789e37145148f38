package console

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/xborder/xborder/gateway/impact"
)

// MaxShadow bounds a shadow run.
const MaxShadow = 24 * time.Hour

func (c *Console) shadowStart(w http.ResponseWriter, r *http.Request) {
	j := c.findJob(r.PathValue("id"))
	if j == nil {
		c.fail(w, r, http.StatusNotFound, "No such comparison.")
		return
	}
	c.mu.Lock()
	cand := j.Candidate
	c.mu.Unlock()
	if cand == nil {
		c.fail(w, r, http.StatusConflict, "This candidate did not compile: nothing to run in shadow.")
		return
	}
	minutes, err := strconv.ParseFloat(r.PostFormValue("minutes"), 64)
	if err != nil || minutes <= 0 || time.Duration(minutes*float64(time.Minute)) > MaxShadow {
		c.fail(w, r, http.StatusBadRequest, "Give a duration in minutes, up to 24 hours.")
		return
	}
	live := c.o.Policy.Current()
	s, err := impact.StartShadow(context.Background(), cand, live.Version,
		impact.ShadowOptions{For: time.Duration(minutes * float64(time.Minute)), Listed: impact.ListedOf(live)})
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if old := c.shadow.Swap(s); old != nil {
		old.Stop()
	}
	c.log.Info("console: shadow run started", "officer", officer(r), "candidate", cand.Version, "minutes", minutes)
	http.Redirect(w, r, Prefix+"shadow", http.StatusSeeOther)
}

func (c *Console) shadowStop(w http.ResponseWriter, r *http.Request) {
	if s := c.shadow.Load(); s != nil {
		s.Stop()
		c.log.Info("console: shadow run stopped", "officer", officer(r))
	}
	http.Redirect(w, r, Prefix+"shadow", http.StatusSeeOther)
}

func (c *Console) shadowPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "shadow", "Shadow on live traffic", "shadow", c.ShadowReport())
}

func (c *Console) shadowDiffs(w http.ResponseWriter, r *http.Request) {
	rep := c.ShadowReport()
	if rep == nil {
		c.fail(w, r, http.StatusNotFound, "No shadow run yet.")
		return
	}
	d := drill(rep.Report, r)
	d.Back = Prefix + "shadow"
	c.render(w, r, http.StatusOK, "diffs", "Changed decisions", "shadow", d)
}
