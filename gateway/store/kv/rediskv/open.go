package rediskv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options say how commits are made safe.
type Options struct {
	// Name is the store's namespace (the hash tag of every key).
	Name string
	// AckReplicas is how many replicas must hold a commit before Update
	// returns nil; negative: the default, 1 on a redis-sentinel:// URL and
	// 0 on redis://.
	AckReplicas int
	// AckTimeout bounds the wait for them (0: DefaultAckTimeout).
	AckTimeout time.Duration
}

// DefaultAckTimeout is how long a commit waits for its replicas by default.
const DefaultAckTimeout = 500 * time.Millisecond

// SentinelScheme names a store behind Redis Sentinel:
// redis-sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,.../MASTER_NAME/DB
// (the Sentinels' addresses, the master's name, the database).
const SentinelScheme = "redis-sentinel"

// Open connects to url (redis://host:port/db or redis-sentinel://...) and
// loads the function library, with the default acknowledgement; Close
// closes the connection. name is the store's namespace.
func Open(ctx context.Context, url, name string) (*DB, error) {
	return OpenURL(ctx, url, Options{Name: name, AckReplicas: -1})
}

// OpenURL connects to a redis:// or redis-sentinel:// URL and loads the
// function library. The client never retries a command (see New) and
// gives up dialing at once, so that a store without a primary answers
// ErrUnavailable at once rather than after a client's timeouts.
func OpenURL(ctx context.Context, rawURL string, o Options) (*DB, error) {
	var c *redis.Client
	sentinel := strings.HasPrefix(rawURL, SentinelScheme+"://")
	if o.AckReplicas < 0 {
		o.AckReplicas = 0
		if sentinel {
			o.AckReplicas = 1
		}
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	// A commit's answer comes after its WAIT: the read timeout outlasts it.
	readTimeout := max(3*time.Second, o.AckTimeout+2*time.Second)
	if sentinel {
		fo, err := ParseSentinelURL(rawURL)
		if err != nil {
			return nil, err
		}
		fo.MaxRetries, fo.DialerRetries = -1, 1
		fo.DialTimeout, fo.ReadTimeout, fo.WriteTimeout = time.Second, readTimeout, readTimeout
		c = redis.NewFailoverClient(fo)
	} else {
		ro, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		ro.MaxRetries, ro.DialerRetries = -1, 1
		if ro.ReadTimeout < readTimeout {
			ro.ReadTimeout, ro.WriteTimeout = readTimeout, readTimeout
		}
		c = redis.NewClient(ro)
	}
	d, err := NewWith(ctx, c, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	d.owned = true
	return d, nil
}

// ParseSentinelURL reads redis-sentinel://[:PASSWORD@]HOST:PORT,.../MASTER_NAME/DB.
// The password, if any, is the data nodes'; the Sentinels take none.
func ParseSentinelURL(raw string) (*redis.FailoverOptions, error) {
	rest, ok := strings.CutPrefix(raw, SentinelScheme+"://")
	bad := func(why string) error {
		return fmt.Errorf("rediskv: %s: want %s://HOST:PORT,HOST:PORT,.../MASTER_NAME/DB", why, SentinelScheme)
	}
	if !ok {
		return nil, bad("not a " + SentinelScheme + " URL")
	}
	o := &redis.FailoverOptions{}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, pass, _ := strings.Cut(rest[:at], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, bad("bad user")
		}
		if o.Password, err = url.PathUnescape(pass); err != nil {
			return nil, bad("bad password")
		}
		rest = rest[at+1:]
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return nil, bad("not three parts")
	}
	for _, a := range strings.Split(parts[0], ",") {
		h, p, err := net.SplitHostPort(a)
		if err != nil || h == "" {
			return nil, bad(fmt.Sprintf("Sentinel address %q is not HOST:PORT", a))
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, bad(fmt.Sprintf("Sentinel address %q has no valid port", a))
		}
		o.SentinelAddrs = append(o.SentinelAddrs, a)
	}
	var err error
	if o.MasterName, err = url.PathUnescape(parts[1]); err != nil || o.MasterName == "" {
		return nil, bad("empty master name")
	}
	if o.DB, err = strconv.Atoi(parts[2]); err != nil || o.DB < 0 {
		return nil, bad(fmt.Sprintf("database %q is not a number", parts[2]))
	}
	return o, nil
}

// serverVersion reads redis_version from INFO server as major*100+minor.
func serverVersion(ctx context.Context, c redis.UniversalClient) (int, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			f := strings.SplitN(v, ".", 3)
			if len(f) < 2 {
				break
			}
			major, err1 := strconv.Atoi(f[0])
			minor, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil {
				break
			}
			return major*100 + minor, nil
		}
	}
	return 0, errors.New("rediskv: INFO server without a redis_version")
}
