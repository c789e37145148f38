package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
)

// liveAudit is the live audit log as the CLI reads it: the store's own
// backend when no gateway runs, or the running gateway's export (every
// chain and checkpoint, closed by checkpoints it signs now) held in memory.
type liveAudit struct {
	audit.Backend
	verify func(ctx context.Context) (audit.Summary, error)
}

// liveLog opens the live audit log through the running gateway
// (viaGateway, as useGateway decided), or in the store.
func (t *gatewayTarget) liveLog(ctx context.Context, keys envelope.KeyFunc, viaGateway bool) (*liveAudit, error) {
	if viaGateway {
		resp, err := t.call(ctx, http.MethodGet, "/audit/export", nil)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("audit: export from %s: %w", t.base, err)
		}
		mem, err := readExport(raw)
		if err != nil {
			return nil, err
		}
		return &liveAudit{Backend: mem, verify: func(context.Context) (audit.Summary, error) {
			return audit.VerifyExport(bytes.NewReader(raw), keys)
		}}, nil
	}
	b, err := t.openAuditLog(ctx)
	if err != nil {
		return nil, err
	}
	return &liveAudit{Backend: b, verify: func(ctx context.Context) (audit.Summary, error) {
		return audit.VerifyLive(ctx, b, keys)
	}}, nil
}

// exportLine is one line of an export (audit.Export).
type exportLine struct {
	Entry      *audit.Entry      `json:"entry,omitempty"`
	Checkpoint *audit.Checkpoint `json:"checkpoint,omitempty"`
}

// memLog is an export read into memory, as a read-only audit.Backend.
type memLog struct {
	entries map[string][]audit.Entry
	cps     map[string][]audit.Checkpoint
}

var _ audit.Backend = (*memLog)(nil)

func readExport(raw []byte) (*memLog, error) {
	m := &memLog{entries: map[string][]audit.Entry{}, cps: map[string][]audit.Checkpoint{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l exportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("audit: export line %d: %w", n, err)
		}
		switch {
		case l.Entry != nil:
			m.entries[l.Entry.Replica] = append(m.entries[l.Entry.Replica], *l.Entry)
		case l.Checkpoint != nil:
			m.cps[l.Checkpoint.Replica] = append(m.cps[l.Checkpoint.Replica], *l.Checkpoint)
		}
	}
	return m, sc.Err()
}

var errReadOnly = errors.New("audit: an export read back is read-only")

func (m *memLog) Append(context.Context, string, audit.Entry) (audit.Entry, error) {
	return audit.Entry{}, errReadOnly
}

func (m *memLog) PutCheckpoint(context.Context, audit.Checkpoint) error { return errReadOnly }

func (m *memLog) Entries(ctx context.Context, replica string, from uint64, fn func(audit.Entry) error) error {
	for _, e := range m.entries[replica] {
		if e.Seq < from {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) Replicas(context.Context) ([]string, error) {
	seen := map[string]bool{}
	for r := range m.entries {
		seen[r] = true
	}
	for r := range m.cps {
		seen[r] = true
	}
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out, nil
}

func (m *memLog) Head(_ context.Context, replica string) (uint64, string, error) {
	es := m.entries[replica]
	if len(es) == 0 {
		return 0, "", nil
	}
	last := es[len(es)-1]
	return last.Seq, last.Hash, nil
}

func (m *memLog) Checkpoints(_ context.Context, replica string) ([]audit.Checkpoint, error) {
	return m.cps[replica], nil
}

func (m *memLog) Close() error { return nil }
