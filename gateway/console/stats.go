package console

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/xborder/xborder/gateway/audit"
)

// stats counts decisions from the audit log (acceptances and denials of
// every replica), by hour, for the last seven days. It reads each chain
// once, then only the entries appended since the last look.
type stats struct {
	b     audit.Backend
	mu    sync.Mutex
	next  map[string]uint64 // replica → next seq to read
	hours map[int64]*hour   // unix hour → counts
	// policy history: every policy change and refusal in the log
	policy []audit.Entry
}

type hour struct {
	purpose map[string]*counts
	rule    map[string]*counts
}

// counts of decisions: allowed whole, allowed with fields removed
// (trimmed), denied.
type counts struct {
	Allowed, Trimmed, Denied int
}

func (c counts) Total() int { return c.Allowed + c.Trimmed + c.Denied }

func newStats(b audit.Backend) *stats {
	return &stats{b: b, next: map[string]uint64{}, hours: map[int64]*hour{}}
}

// refresh reads what was appended since the last call.
func (s *stats) refresh(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	replicas, err := s.b.Replicas(ctx)
	if err != nil {
		return err
	}
	oldest := now.Add(-7*24*time.Hour).Unix() / 3600
	for _, r := range replicas {
		from := s.next[r]
		if from == 0 {
			from = 1
		}
		err := s.b.Entries(ctx, r, from, func(e audit.Entry) error {
			s.next[r] = e.Seq + 1
			switch e.Kind {
			case audit.KindPolicyChanged, audit.KindPolicyRefused:
				s.policy = append(s.policy, e)
				return nil
			case audit.KindAccepted, audit.KindDenied:
			default:
				return nil
			}
			h := e.Time.Unix() / 3600
			if h < oldest {
				return nil
			}
			b := s.hours[h]
			if b == nil {
				b = &hour{purpose: map[string]*counts{}, rule: map[string]*counts{}}
				s.hours[h] = b
			}
			inc := func(m map[string]*counts, k string) {
				c := m[k]
				if c == nil {
					c = &counts{}
					m[k] = c
				}
				switch {
				case e.Kind == audit.KindDenied:
					c.Denied++
				case len(e.Redacted) > 0:
					c.Trimmed++
				default:
					c.Allowed++
				}
			}
			inc(b.purpose, e.Purpose)
			if len(e.Rules) == 0 {
				inc(b.rule, "(none)")
			}
			for _, rule := range e.Rules {
				inc(b.rule, rule)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for h := range s.hours {
		if h < oldest {
			delete(s.hours, h)
		}
	}
	return nil
}

// Row is one bar of a chart.
type Row struct {
	Key string
	counts
}

// window sums the last d by purpose and by rule.
func (s *stats) window(now time.Time, d time.Duration) (byPurpose, byRule []Row, total counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := now.Add(-d).Unix() / 3600
	p, r := map[string]*counts{}, map[string]*counts{}
	add := func(dst map[string]*counts, src map[string]*counts) {
		for k, c := range src {
			t := dst[k]
			if t == nil {
				t = &counts{}
				dst[k] = t
			}
			t.Allowed += c.Allowed
			t.Trimmed += c.Trimmed
			t.Denied += c.Denied
		}
	}
	for h, b := range s.hours {
		if h < from {
			continue
		}
		add(p, b.purpose)
		add(r, b.rule)
		for _, c := range b.purpose {
			total.Allowed += c.Allowed
			total.Trimmed += c.Trimmed
			total.Denied += c.Denied
		}
	}
	return rows(p, false), rows(r, true), total
}

func rows(m map[string]*counts, byRule bool) []Row {
	out := make([]Row, 0, len(m))
	for k, c := range m {
		out = append(out, Row{Key: k, counts: *c})
	}
	sort.Slice(out, func(i, j int) bool {
		if byRule {
			return ruleLess(out[i].Key, out[j].Key)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func ruleLess(a, b string) bool {
	na, nb := ruleNum(a), ruleNum(b)
	if na != nb {
		return na < nb
	}
	return a < b
}

func ruleNum(s string) int {
	if len(s) < 2 || s[0] != 'R' {
		return 1 << 20
	}
	n := 0
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return 1 << 20
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// policyHistory is every policy change and refusal in the log, newest first.
func (s *stats) policyHistory() []audit.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]audit.Entry(nil), s.policy...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out
}
