package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/xborder/xborder/gateway/audit"
	"github.com/xborder/xborder/gateway/envelope"
	"github.com/xborder/xborder/gateway/store"
)

// fakeStore answers Accept, RecordDenial and Message as told.
type fakeStore struct {
	store.Store
	err      error          // of Accept and RecordDenial
	prev     *store.Message // with ErrDuplicate
	read     *store.Message // what Message finds
	readErr  error
	readDone int
}

func (f *fakeStore) Accept(context.Context, *store.Message, []store.Delivery, ...audit.Entry) (*store.Message, error) {
	return f.prev, f.err
}

func (f *fakeStore) RecordDenial(context.Context, *store.Message, audit.Entry) error { return f.err }

func (f *fakeStore) Message(ctx context.Context, from, id string) (*store.Message, error) {
	f.readDone++
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return f.read, f.readErr
}

var (
	unknown     = fmt.Errorf("redis: accept: %w: %w: EOF", store.ErrUnavailable, store.ErrOutcomeUnknown)
	cannotWrite = fmt.Errorf("redis: accept: %w: connection refused", store.ErrUnavailable)
)

func ours() *store.Message {
	return &store.Message{From: "UN-UNICEF", ID: "m1", Status: store.StatusAccepted, DecisionID: "d-ours",
		JWSSHA256: "sum", Answer: []byte(`{"status":"accepted"}`)}
}

// answer classifies what Submit would answer.
func answer(ans *Answer, err error) string {
	var xe *Error
	switch {
	case err == nil:
		return fmt.Sprint(ans.Status)
	case errors.As(err, &xe) && xe.Detail == DetailOutcomeUnknown:
		return xe.Code + " " + xe.Detail
	case errors.As(err, &xe):
		return xe.Code
	}
	return "internal"
}

// Every answer is what the store did: an unknown outcome is read back.
func TestCommitAcceptance(t *testing.T) {
	other := ours()
	other.DecisionID = "d-other" // another copy of the same signed message won
	different := ours()
	different.DecisionID, different.JWSSHA256 = "d-other", "other"
	denied := ours()
	denied.Status, denied.DecisionID = store.StatusDenied, "d-earlier"
	tests := []struct {
		name string
		f    fakeStore
		want string
		read bool
	}{
		{"committed", fakeStore{}, "202", false},
		{"a copy won the race", fakeStore{err: store.ErrDuplicate, prev: other}, "200", false},
		{"another message holds the id", fakeStore{err: store.ErrDuplicate, prev: different}, CodeReplay, false},
		{"content the store refuses", fakeStore{err: fmt.Errorf("bolt: accept: %w", store.ErrInvalidKey)}, string(envelope.CodeInvalidMessage), false},
		{"the store cannot write", fakeStore{err: cannotWrite}, CodeUnavailable, false},
		{"a bug, not the store", fakeStore{err: errors.New("bolt: accept: delivery id repeated")}, "internal", false},
		{"unknown, read back: ours", fakeStore{err: unknown, read: ours()}, "202", true},
		{"unknown, read back: a copy of ours", fakeStore{err: unknown, read: other}, "200", true},
		{"unknown, read back: another message", fakeStore{err: unknown, read: different}, CodeReplay, true},
		{"unknown, read back: absent", fakeStore{err: unknown, readErr: store.ErrNotFound}, CodeUnavailable, true},
		{"unknown, read back: an earlier denial only", fakeStore{err: unknown, read: denied}, CodeUnavailable, true},
		{"unknown, the read fails too", fakeStore{err: unknown, readErr: cannotWrite}, CodeUnavailable + " " + DetailOutcomeUnknown, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := &Exchange{o: Options{Store: &tc.f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
			// The request's own deadline has passed: the read back still runs.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			got := answer(x.commitAcceptance(ctx, ours(), nil, nil))
			if got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
			if (tc.f.readDone > 0) != tc.read {
				t.Errorf("read back %d times", tc.f.readDone)
			}
		})
	}
}

// No 403 without its committed entry.
func TestRecordDenial(t *testing.T) {
	rec := ours()
	rec.Status = store.StatusDenied
	recorded := *rec
	accepted := ours()
	accepted.DecisionID = "d-accepted"
	tests := []struct {
		name string
		f    fakeStore
		want string // "" for the 403
	}{
		{"committed", fakeStore{}, ""},
		{"the store cannot write", fakeStore{err: cannotWrite}, CodeUnavailable},
		{"content the store refuses", fakeStore{err: fmt.Errorf("redis: record denial: %w", store.ErrInvalidKey)}, string(envelope.CodeInvalidMessage)},
		{"unknown, read back: recorded", fakeStore{err: unknown, read: &recorded}, ""},
		{"unknown, read back: absent", fakeStore{err: unknown, readErr: store.ErrNotFound}, CodeUnavailable},
		{"unknown, an acceptance holds the id", fakeStore{err: unknown, read: accepted}, CodeUnavailable + " " + DetailOutcomeUnknown},
		{"unknown, the read fails too", fakeStore{err: unknown, readErr: cannotWrite}, CodeUnavailable + " " + DetailOutcomeUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := &Exchange{o: Options{Store: &tc.f}}
			err := x.recordDenial(context.Background(), rec, audit.Entry{Kind: audit.KindDenied})
			got := ""
			if err != nil {
				got = answer(nil, err)
			}
			if got != tc.want {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
		})
	}
}
