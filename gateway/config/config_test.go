package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/config"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xborder.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsTheDevelopmentSetup(t *testing.T) {
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8443" || c.OpsListen != "127.0.0.1:9090" || c.Store != "bolt:data/xborder.db" ||
		c.Registry != "certs/dev/registry.yaml" || c.DevPKI != "certs/dev" || c.BodyLimit != 1<<20 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestLoad(t *testing.T) {
	p := write(t, "listen: 127.0.0.1:1\nops_listen: 127.0.0.1:2\nstore: bolt:db/x.db\nregistry: reg.yaml\ninbox_visibility: 5s\n")
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.Registry != filepath.Join(dir, "reg.yaml") || c.Store != "bolt:"+filepath.Join(dir, "db/x.db") {
		t.Errorf("paths not resolved against the file: %s %s", c.Registry, c.Store)
	}
	if c.InboxVisibility != 5*time.Second || c.DevPKI != "" {
		t.Errorf("got %+v", c)
	}
	if kind, target := c.StoreKind(); kind != "bolt" || !strings.HasSuffix(target, "x.db") {
		t.Errorf("store kind %s %s", kind, target)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("XBORDER_STORE", "redis://127.0.0.1:6379/0")
	t.Setenv("XBORDER_BODY_LIMIT", "2048")
	t.Setenv("XBORDER_POLICY_TIMEOUT", "1s")
	c, err := config.Load(write(t, "store: bolt:x.db\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := c.StoreKind(); k != "redis" || c.BodyLimit != 2048 || c.PolicyTimeout != time.Second {
		t.Errorf("env not applied: %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       []string
	}{
		{"unknown key", "lisen: 1.2.3.4:5\n", nil, []string{"lisen"}},
		{"bad store", "store: postgres://x\n", nil, []string{"store"}},
		{"several problems at once", "listen: nohostport\nbody_limit: 10\nlog_level: loud\n", nil, []string{"listen", "body_limit", "log_level"}},
		{"negative max_inflight", "max_inflight: -1\n", nil, []string{"max_inflight"}},
		{"bad env duration", "", map[string]string{"XBORDER_INBOX_VISIBILITY": "soon"}, []string{"XBORDER_INBOX_VISIBILITY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := config.Load(write(t, tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestRedisDurabilityRequiredByDefault(t *testing.T) {
	c, err := config.Load(write(t, "store: redis://127.0.0.1:6379/0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.RedisRequireDurable {
		t.Error("a Redis without AOF always would be accepted by default")
	}
}

func TestVerdictDir(t *testing.T) {
	c := config.Default()
	if got := c.VerdictDir(); got != filepath.Join("data", "policy-verdicts") {
		t.Errorf("beside the bolt store: %q", got)
	}
	c.PolicyVerdicts = "off"
	if got := c.VerdictDir(); got != "" {
		t.Errorf("off: %q", got)
	}
	c.PolicyVerdicts = "/var/lib/x/verdicts"
	if got := c.VerdictDir(); got != "/var/lib/x/verdicts" {
		t.Errorf("configured: %q", got)
	}
}

// Config errors name the key as an operator writes it (YAML key and
// environment variable), suggest the key meant, and come all at once: a
// value of the wrong type hides neither the other keys' range errors nor
// the unknown keys.
func TestProblemsAllAtOnce(t *testing.T) {
	t.Setenv("XBORDER_RATE_LIMIT", "many")
	_, err := config.Load(write(t, "listen_ops: 127.0.0.1:1\nbody_limit: big\nlog_level: loud\nclock_skew: 2h\nregistr: x\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`unknown key "listen_ops" (did you mean "ops_listen"?)`,
		`unknown key "registr" (did you mean "registry"?)`,
		`body_limit (XBORDER_BODY_LIMIT): "big" is not a whole number`,
		`log_level (XBORDER_LOG_LEVEL): "loud"`,
		`clock_skew (XBORDER_CLOCK_SKEW): 2h0m0s is not between 0 and 1h`,
		`environment XBORDER_RATE_LIMIT (rate_limit): "many" is not a whole number`,
		"line 2",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "config.Config") {
		t.Errorf("a Go type name in:\n%s", msg)
	}
}

// On Redis the verdict cache is in the user's cache directory, not beside
// the config file (which may be mounted read-only) nor in the working
// directory.
func TestVerdictDirOnRedis(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", cache)
	c, err := config.Load(write(t, "store: redis://127.0.0.1:6379/0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.VerdictDir(), filepath.Join(cache, "xborder", "policy-verdicts"); got != want {
		t.Errorf("verdicts in %q, want %q", got, want)
	}
}

func TestRedisAcks(t *testing.T) {
	for _, c := range []struct {
		body string
		want int
	}{
		{"store: redis-sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/xmaster/0\n", 1},
		{"store: redis://127.0.0.1:6379/0\n", 0},
		{"store: redis-sentinel://127.0.0.1:26379/xmaster/0\nredis_ack_replicas: 2\n", 2},
		{"store: redis-sentinel://127.0.0.1:26379/xmaster/0\nredis_ack_replicas: 0\n", 0},
	} {
		cfg, err := config.Load(write(t, c.body))
		if err != nil {
			t.Fatalf("%q: %v", c.body, err)
		}
		if kind, _ := cfg.StoreKind(); kind != "redis" || cfg.RedisAcks() != c.want || cfg.RedisAckTimeout != 500*time.Millisecond {
			t.Errorf("%q: kind %q, acks %d, timeout %v; want redis, %d, 500ms", c.body, kind, cfg.RedisAcks(), cfg.RedisAckTimeout, c.want)
		}
	}
	for key, body := range map[string]string{
		"redis_ack_replicas": "store: redis://127.0.0.1:6379/0\nredis_ack_replicas: -2\n",
		"redis_ack_timeout":  "store: redis://127.0.0.1:6379/0\nredis_ack_timeout: 0s\n",
	} {
		if _, err := config.Load(write(t, body)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want a refusal naming %s", body, err, key)
		}
	}
}
