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

// subject is "who received what about this person": from the audit log,
// without the data. Printable.
func (c *Console) subject(w http.ResponseWriter, r *http.Request) {
	d := subjectData{Ref: strings.TrimSpace(r.URL.Query().Get("ref")), At: c.o.Now().UTC()}
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
	c.render(w, r, http.StatusOK, "subject", "Subject accountability", "subject", d)
}
