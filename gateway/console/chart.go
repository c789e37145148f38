package console

import (
	"fmt"
	"html/template"
	"strings"
)

// barChart draws rows as horizontal stacked bars (allowed, trimmed,
// denied) in SVG, on the server: no script, no inline style (colours come
// from the stylesheet's classes). Each bar has a text label and a <title>
// that screen readers and hover read.
func barChart(title string, rows []Row) template.HTML {
	if len(rows) == 0 {
		return template.HTML(`<p class="empty">No decisions in this period.</p>`)
	}
	maxTotal := 1
	for _, r := range rows {
		maxTotal = max(maxTotal, r.Total())
	}
	const (
		labelW = 190
		barW   = 300
		rowH   = 22
		width  = labelW + barW + 70
	)
	var b strings.Builder
	h := rowH*len(rows) + 8
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="100%%" preserveAspectRatio="xMinYMin meet">`,
		template.HTMLEscapeString(title), width, h)
	for i, r := range rows {
		y := i*rowH + 4
		fmt.Fprintf(&b, `<g><title>%s: %d allowed, %d trimmed, %d denied</title>`,
			template.HTMLEscapeString(r.Key), r.Allowed, r.Trimmed, r.Denied)
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, labelW-6, y+14, template.HTMLEscapeString(r.Key))
		x := labelW
		for _, part := range []struct {
			n   int
			cls string
		}{{r.Allowed, "allowed"}, {r.Trimmed, "trimmed"}, {r.Denied, "denied"}} {
			if part.n == 0 {
				continue
			}
			w := max(1, part.n*barW/maxTotal)
			fmt.Fprintf(&b, `<rect class="%s" x="%d" y="%d" width="%d" height="%d"></rect>`, part.cls, x, y, w, rowH-6)
			x += w
		}
		fmt.Fprintf(&b, `<text class="value" x="%d" y="%d">%d</text></g>`, x+6, y+14, r.Total())
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
