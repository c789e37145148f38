package gateway

import (
	"errors"
	"strings"
	"testing"
)

// Every way the Redis store fails during a failover is named on /readyz.
// The soak of the failover suite saw "use of closed network connection"
// (the client closing its connections to a frozen primary when Sentinel
// switches) answered 503 with no detail.
func TestRedisConditionNamesFailoverErrors(t *testing.T) {
	for _, msg := range []string{
		"redis: ping: store: unavailable: config get: store: unavailable: read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection",
		"redis: ping: store: unavailable: EOF",
		"redis: ping: store: unavailable: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer",
		"redis: ping: store: unavailable: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout",
	} {
		if d := redisCondition(errors.New(msg)); !strings.HasPrefix(d, "redis: ") {
			t.Errorf("%q: detail %q", msg, d)
		}
	}
}
