package policy

import (
	"context"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The interpreter caches the value of every rule (and of every function
// call with ground arguments) it evaluates in a decision, and looks them up
// for every reference: in this policy some hundred entries and several
// hundred lookups a decision. OPA's own cache is a trie with a hash map per
// level, and a decision's cache sat behind the frozen cache of the seeded
// rules, so that a lookup hashed every term of a ref twice and an entry
// cost a few allocations. decisionCache hashes a ref once, looks it up in
// two flat tables (the seeds', read-only and shared, then the decision's
// own) and keeps its tables across decisions (a sync.Pool), so that a
// decision allocates no cache at all.

// refTable maps refs to values: the hash of a ref's terms leads to a chain
// of entries, and equality of the ref picks one. It is not safe for
// concurrent writes; a table that is no longer written (the seeds') may be
// read concurrently.
type refTable struct {
	index   map[uint64]int32 // ref hash -> the last entry of its chain
	entries []refEntry
	terms   []*ast.Term // the refs of the entries, back to back
}

type refEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	next      int32 // the previous entry of the same hash, or -1
}

func newRefTable(size int) *refTable {
	return &refTable{
		index:   make(map[uint64]int32, size),
		entries: make([]refEntry, 0, size),
		terms:   make([]*ast.Term, 0, 4*size),
	}
}

// refHash hashes the values of a ref's terms, in order (FNV-1a over the
// terms' own hashes).
func refHash(ref ast.Ref) uint64 {
	h := uint64(14695981039346656037)
	for _, t := range ref {
		h = (h ^ uint64(t.Value.Hash())) * 1099511628211
	}
	return h
}

func (t *refTable) find(h uint64, ref ast.Ref) *refEntry {
	i, ok := t.index[h]
	if !ok {
		return nil
	}
	for i >= 0 {
		e := &t.entries[i]
		if e.ref.Equal(ref) {
			return e
		}
		i = e.next
	}
	return nil
}

// get is topdown.VirtualCache's Get: the value, or nil and whether the ref
// is known to be undefined.
func (t *refTable) get(h uint64, ref ast.Ref) (*ast.Term, bool) {
	e := t.find(h, ref)
	switch {
	case e == nil:
		return nil, false
	case e.undefined:
		return nil, true
	}
	return e.value, false
}

// put is topdown.VirtualCache's Put: a nil value marks the ref undefined,
// for good (as OPA's cache does). The ref is copied: the interpreter reuses
// the slices it passes.
func (t *refTable) put(h uint64, ref ast.Ref, value *ast.Term) {
	if e := t.find(h, ref); e != nil {
		if value == nil {
			e.undefined = true
		} else {
			e.value = value
		}
		return
	}
	start := len(t.terms)
	t.terms = append(t.terms, ref...)
	e := refEntry{ref: t.terms[start:len(t.terms):len(t.terms)], value: value, undefined: value == nil, next: -1}
	if i, ok := t.index[h]; ok {
		e.next = i
	}
	t.index[h] = int32(len(t.entries))
	t.entries = append(t.entries, e)
}

func (t *refTable) keys() []ast.Ref {
	var out []ast.Ref
	for _, e := range t.entries {
		if e.value != nil {
			out = append(out, e.ref)
		}
	}
	return out
}

// reset empties the table and lets go of every term it held, keeping its
// capacity.
func (t *refTable) reset() {
	clear(t.index)
	clear(t.entries)
	t.entries = t.entries[:0]
	clear(t.terms)
	t.terms = t.terms[:0]
}

// decisionCache is the virtual-document cache of one decision: the seeded
// values first, then what the decision computes itself. Inside `with`,
// where data or input may be replaced, only the values computed under it
// count (a frame each, as in OPA's cache).
type decisionCache struct {
	seed   *refTable   // read-only, shared; nil when nothing is seeded
	frames []*refTable // frames[0] is the decision's own
	data   dataCache   // the base documents (below)
}

var _ topdown.VirtualCache = (*decisionCache)(nil)

// decisionCacheSize fits the entries of one decision of this policy; a
// table grows beyond it when a policy needs more.
const decisionCacheSize = 256

var decisionCaches = sync.Pool{New: func() any {
	return &decisionCache{frames: []*refTable{newRefTable(decisionCacheSize)}}
}}

// newDecisionCache returns an empty cache over seed (which may be nil)
// and the data roots. Give it back with release when the decision is done.
func newDecisionCache(seed *refTable, roots dataRoots) *decisionCache {
	c := decisionCaches.Get().(*decisionCache)
	c.seed = seed
	c.data.roots = roots
	return c
}

// release empties c and returns it to the pool; c must not be used after.
func (c *decisionCache) release() {
	c.frames[0].reset()
	clear(c.frames[1:])
	c.frames = c.frames[:1]
	c.seed = nil
	c.data.roots = nil
	clear(c.data.own)
	c.data.own = c.data.own[:0]
	decisionCaches.Put(c)
}

func (c *decisionCache) Push() { c.frames = append(c.frames, newRefTable(8)) }

func (c *decisionCache) Pop() {
	c.frames[len(c.frames)-1] = nil
	c.frames = c.frames[:len(c.frames)-1]
}

func (c *decisionCache) Get(ref ast.Ref) (*ast.Term, bool) {
	h := refHash(ref)
	if len(c.frames) == 1 && c.seed != nil {
		if v, undefined := c.seed.get(h, ref); v != nil || undefined {
			return v, undefined
		}
	}
	return c.frames[len(c.frames)-1].get(h, ref)
}

func (c *decisionCache) Put(ref ast.Ref, value *ast.Term) {
	c.frames[len(c.frames)-1].put(refHash(ref), ref, value)
}

func (c *decisionCache) Keys() []ast.Ref { return c.frames[len(c.frames)-1].keys() }

// The interpreter also caches the base documents (the policy data) it
// reads, in a cache of its own per decision: every decision read the same
// data from the store again (a path, a read, a trie of Go maps). The data
// of a bundle never changes, so dataCache serves every read below a
// top-level key of the data from the values read once at compile
// (dataRoots), and keeps only what the data does not have (a missing path,
// read again from the store by each decision, as before) in a small cache
// of the decision's own.

// dataRoots are the values of the top-level keys of a bundle's data, as
// the store returns them; read-only.
type dataRoots map[ast.String]ast.Value

func readDataRoots(ctx context.Context, store storage.Store) (dataRoots, error) {
	root, err := storage.ReadOne(ctx, store, storage.Path{})
	if err != nil {
		return nil, err
	}
	obj, ok := root.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("policy: data root is %T, not an object", root)
	}
	roots := dataRoots{}
	obj.Foreach(func(k, v *ast.Term) {
		if s, ok := k.Value.(ast.String); ok && s != ast.String(ast.SystemDocumentKey) {
			roots[s] = v.Value
		}
	})
	return roots, nil
}

// get is topdown.BaseCache's Get for a ref data.<key>...: nil when the data
// has no such path (the interpreter then asks the store).
func (r dataRoots) get(ref ast.Ref) ast.Value {
	if len(ref) < 2 || !ref[0].Equal(ast.DefaultRootDocument) {
		return nil
	}
	key, ok := ref[1].Value.(ast.String)
	if !ok {
		return nil
	}
	v, ok := r[key]
	if !ok {
		return nil
	}
	v, err := v.Find(ref[2:])
	if err != nil {
		return nil
	}
	return v
}

// dataCache is the base-document cache of one decision.
type dataCache struct {
	roots dataRoots
	own   []dataEntry // reads beyond the roots, few
}

type dataEntry struct {
	ref   ast.Ref
	value ast.Value
}

var _ topdown.BaseCache = (*dataCache)(nil)

func (c *dataCache) Get(ref ast.Ref) ast.Value {
	if v := c.roots.get(ref); v != nil {
		return v
	}
	for _, e := range c.own {
		if e.ref.Equal(ref) {
			return e.value
		}
	}
	return nil
}

func (c *dataCache) Put(ref ast.Ref, value ast.Value) {
	c.own = append(c.own, dataEntry{ref: ref.Copy(), value: value})
}
