package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/xborder/xborder/gateway/audit"
)

type subjectData struct {
	Ref     string
	Hash    string
	Entries []audit.Entry
	Asked   bool
	Err     string
	At      time.Time
}

// subjectForm is the empty form. A reference in the URL (?ref=) is not
// read: it would sit in proxy logs and the browser's history; the form
// posts it in the body.
func (c *Console) subjectForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "subject", "Subject accountability", "subject", subjectData{At: c.o.Now().UTC()})
}

// subject is "who received what about this person": from the audit log,
// without the data. Printable. Reports are counted per officer (with the
// API's, SubjectLimit).
func (c *Console) subject(w http.ResponseWriter, r *http.Request) {
	d := subjectData{Ref: strings.TrimSpace(r.PostFormValue("ref")), At: c.o.Now().UTC()}
	status := http.StatusOK
	if d.Ref != "" && c.o.SubjectLimit != nil {
		wait, err := c.o.SubjectLimit(r.Context(), officer(r))
		if err != nil || wait > 0 {
			d.Asked, d.Err, status = true, "Too many subject reports for now: wait a minute and try again.", http.StatusTooManyRequests
			if err != nil {
				d.Err, status = "The gateway cannot count requests now.", http.StatusServiceUnavailable
			}
			c.render(w, r, status, "subject", "Subject accountability", "subject", d)
			return
		}
	}
	if d.Ref != "" {
		d.Asked = true
		if len(d.Ref) > 200 || c.o.Subject == nil {
			d.Err = "A subject reference is at most 200 characters."
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			var err error
			d.Hash, d.Entries, err = c.o.Subject(ctx, d.Ref)
			cancel()
			if err != nil {
				d.Err = "The audit log could not be read now."
			}
			c.log.Info("console: subject report", "officer", officer(r), "entries", len(d.Entries))
		}
	}
	c.render(w, r, status, "subject", "Subject accountability", "subject", d)
}
