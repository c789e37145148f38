package kv

import "context"

// Position is where a commit landed in a replicated store's history: the
// primary's identity (a new primary has a new one: a failover starts
// another history) and an offset in that history at or after the commit.
// A driver whose store has no replicas reports nothing.
type Position struct {
	Epoch  string
	Offset int64
}

type positionKey struct{}

// WithPosition returns ctx carrying p: a driver that knows where its
// commits land fills p in when an Update with this context commits writes.
// The slot is read from the connection that made the commit, so a
// failover between the commit and the answer cannot misplace it.
func WithPosition(ctx context.Context, p *Position) context.Context {
	return context.WithValue(ctx, positionKey{}, p)
}

// PositionSlot is the slot WithPosition put in ctx, or nil.
func PositionSlot(ctx context.Context) *Position {
	p, _ := ctx.Value(positionKey{}).(*Position)
	return p
}

// Group is what a replicated store's primary says of its group now.
type Group struct {
	// Epoch and Offset are the primary's (Position's terms).
	Epoch  string
	Offset int64
	// Replicas are the replicas attached to it.
	Replicas []Replica
}

// Replica is one replica attached to the primary: whether its link is
// online (in sync, streaming) and the offset it acknowledged.
type Replica struct {
	Online bool
	Offset int64
}

// Holds says whether at least n replicas, and every replica attached, are
// online and hold offset.
func (g Group) Holds(offset int64, n int) bool {
	held := 0
	for _, r := range g.Replicas {
		if !r.Online || r.Offset < offset {
			return false
		}
		held++
	}
	return held >= n
}

// Grouped is a DB on a replicated store that can describe its group.
type Grouped interface {
	Group(ctx context.Context) (Group, error)
	// AckReplicas is how many replicas a commit waits for.
	AckReplicas() int
}
