package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // the active section
	Officer string
	CSRF    string
	Data    any
}

var funcs = template.FuncMap{
	"short": func(v string) string {
		v = strings.TrimPrefix(v, "sha256:")
		if len(v) > 12 {
			return v[:12]
		}
		return v
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"day": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02")
	},
	"join": strings.Join,
	"pct": func(a, b int) string {
		if b == 0 {
			return "0"
		}
		return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 1, 64)
	},
	"add": func(a, b int) int { return a + b },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			m[k] = kv[i+1]
		}
		return m
	},
}

// parsePages parses the layout with each page template.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" || base == "report.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/report.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", base, err)
		}
		out[strings.TrimSuffix(base, ".html")] = t
	}
	return out, nil
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	id, _ := r.Context().Value(officerKey{}).(string)
	var buf bytes.Buffer
	if err := t.Execute(&buf, page{Title: title, Nav: nav, Officer: id, CSRF: c.token(r), Data: data}); err != nil {
		c.log.Error("console: render", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders a plain message page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "message", http.StatusText(status), "", map[string]any{"Status": status, "Message": msg})
}

// forbidden is the plain 403 page for anyone but a compliance officer.
func (c *Console) forbidden(w http.ResponseWriter, r *http.Request) {
	t := c.pages["forbidden"]
	var buf bytes.Buffer
	_ = t.Execute(&buf, page{Title: "Forbidden"})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(buf.Bytes())
}

func itoa(n int) string { return strconv.Itoa(n) }
