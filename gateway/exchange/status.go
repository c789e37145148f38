package exchange

import (
	"context"
	"errors"
	"time"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/wire"
)

// Status tells the sender or the recipient of message id where it stands.
// Anyone else, and the recipient of a denied message, learns nothing.
func (x *Exchange) Status(ctx context.Context, identity, id string) (*wire.StatusBody, error) {
	m, err := x.o.Store.Message(ctx, identity, id)
	if errors.Is(err, store.ErrNotFound) {
		m, err = x.o.Store.MessageTo(ctx, identity, id)
		if err == nil && m.Status == store.StatusDenied {
			err = store.ErrNotFound
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &Error{Code: CodeNotFound, Detail: "no such message"}
	case err != nil:
		return nil, unavailable(err)
	}
	return &wire.StatusBody{ID: m.ID, Status: m.Status, Attempts: m.Attempts,
		UpdatedAt: m.UpdatedAt.UTC().Format(time.RFC3339)}, nil
}
