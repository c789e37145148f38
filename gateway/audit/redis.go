package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// RedisOptions tune OpenRedis. The zero value is usable.
type RedisOptions struct {
	// Prefix of every key (default "xborder:audit:").
	Prefix string
}

// Redis is a Backend on a Redis server, shared by the gateway's replicas,
// each with its own chain. Keys under the prefix:
//
//	replicas        set of replica ids
//	e:<replica>     list of entry JSON, entry n at index n-1
//	h:<replica>     the head hash
//	c:<replica>     list of checkpoint JSON
//
// An append is a Lua script that stores the entry only if the list length
// and head are still the ones the entry was linked to; otherwise the head is
// read again and the entry linked anew.
type Redis struct {
	c      *goredis.Client
	prefix string

	mu    sync.Mutex // one append at a time from this process
	heads map[string]redisHead
}

type redisHead struct {
	count uint64
	hash  string
}

var _ Backend = (*Redis)(nil)

// redisPage is how many entries one LRANGE returns.
const redisPage = 512

// redisRetries bounds the appends lost to another process on the same chain
// (two replicas misconfigured with one id).
const redisRetries = 8

var appendScript = goredis.NewScript(`
local h = redis.call('GET', KEYS[2])
if not h then h = '' end
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) or h ~= ARGV[2] then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[5])
return 1
`)

// OpenRedis connects to url (redis:// or rediss://) and checks that the
// server answers.
func OpenRedis(ctx context.Context, url string, o RedisOptions) (*Redis, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		// The parse error may repeat the URL and its password: leave it out.
		return nil, errors.New("audit: redis: invalid URL")
	}
	if o.Prefix == "" {
		o.Prefix = "xborder:audit:"
	}
	r := &Redis{c: goredis.NewClient(opt), prefix: o.Prefix, heads: map[string]redisHead{}}
	if err := r.c.Ping(ctx).Err(); err != nil {
		r.c.Close()
		return nil, fmt.Errorf("audit: redis: %w", err)
	}
	return r, nil
}

// Close closes the client.
func (r *Redis) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("audit: redis: close: %w", err)
	}
	return nil
}

func (r *Redis) key(kind, replica string) string { return r.prefix + kind + ":" + replica }

// Append links e to the replica's head and stores it atomically.
func (r *Redis) Append(ctx context.Context, replica string, e Entry) (Entry, error) {
	if err := checkReplica(replica); err != nil {
		return Entry{}, err
	}
	e.Replica = replica
	if err := e.check(); err != nil {
		return Entry{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := []string{r.key("e", replica), r.key("h", replica), r.prefix + "replicas"}
	for range redisRetries {
		h, ok := r.heads[replica]
		if !ok {
			var err error
			if h.count, h.hash, err = r.Head(ctx, replica); err != nil {
				return Entry{}, err
			}
		}
		n := e
		if err := n.Link(h.count, h.hash); err != nil {
			return Entry{}, err
		}
		v, err := json.Marshal(n)
		if err != nil {
			return Entry{}, fmt.Errorf("audit: redis: append: %w", err)
		}
		res, err := appendScript.Run(ctx, r.c, keys, h.count, h.hash, v, n.Hash, replica).Int()
		if err != nil {
			delete(r.heads, replica) // unknown outcome: read the head again
			return Entry{}, fmt.Errorf("audit: redis: append: %w", err)
		}
		if res == 1 {
			r.heads[replica] = redisHead{count: n.Seq, hash: n.Hash}
			return n, nil
		}
		delete(r.heads, replica)
	}
	return Entry{}, ErrConflict
}

// Entries calls fn for the replica's entries from seq from on.
func (r *Redis) Entries(ctx context.Context, replica string, from uint64, fn func(Entry) error) error {
	start := int64(max(from, 1) - 1)
	for {
		page, err := r.c.LRange(ctx, r.key("e", replica), start, start+redisPage-1).Result()
		if err != nil {
			return fmt.Errorf("audit: redis: entries: %w", err)
		}
		for i, v := range page {
			var e Entry
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				return fmt.Errorf("audit: redis: entries: entry %d: %w", start+int64(i)+1, err)
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < redisPage {
			return nil
		}
		start += redisPage
	}
}

// Replicas lists the chains, sorted.
func (r *Redis) Replicas(ctx context.Context) ([]string, error) {
	ids, err := r.c.SMembers(ctx, r.prefix+"replicas").Result()
	if err != nil {
		return nil, fmt.Errorf("audit: redis: replicas: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// Head returns the replica's entry count and last hash, read together.
func (r *Redis) Head(ctx context.Context, replica string) (uint64, string, error) {
	var n *goredis.IntCmd
	var h *goredis.StringCmd
	_, err := r.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		n = p.LLen(ctx, r.key("e", replica))
		h = p.Get(ctx, r.key("h", replica))
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, "", fmt.Errorf("audit: redis: head: %w", err)
	}
	head, err := h.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, "", fmt.Errorf("audit: redis: head: %w", err)
	}
	return uint64(n.Val()), head, nil
}

// PutCheckpoint stores a checkpoint after the replica's earlier ones.
func (r *Redis) PutCheckpoint(ctx context.Context, cp Checkpoint) error {
	if err := checkReplica(cp.Replica); err != nil {
		return err
	}
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("audit: redis: checkpoint: %w", err)
	}
	if err := r.c.RPush(ctx, r.key("c", cp.Replica), v).Err(); err != nil {
		return fmt.Errorf("audit: redis: checkpoint: %w", err)
	}
	return nil
}

// Checkpoints returns the replica's checkpoints in the order stored.
func (r *Redis) Checkpoints(ctx context.Context, replica string) ([]Checkpoint, error) {
	vals, err := r.c.LRange(ctx, r.key("c", replica), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("audit: redis: checkpoints: %w", err)
	}
	out := make([]Checkpoint, 0, len(vals))
	for i, v := range vals {
		var cp Checkpoint
		if err := json.Unmarshal([]byte(v), &cp); err != nil {
			return nil, fmt.Errorf("audit: redis: checkpoint %d: %w", i+1, err)
		}
		out = append(out, cp)
	}
	return out, nil
}
