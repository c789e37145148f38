// Package config reads and validates the gateway's configuration
// (PROTOCOL.md §9): a YAML file whose every key can also come from the
// environment as XBORDER_<KEY>.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the gateway's configuration. Relative paths are resolved
// against the directory of the config file (or the working directory for
// the development setup).
type Config struct {
	Listen      string `yaml:"listen"`       // exchange API (mTLS)
	OpsListen   string `yaml:"ops_listen"`   // healthz, readyz, metrics
	Registry    string `yaml:"registry"`     // trust registry YAML
	GatewayKeys string `yaml:"gateway_keys"` // folder with tls.crt, tls.key, sign.jwk, enc.jwk
	Policies    string `yaml:"policies"`     // folder of Rego modules and data.json
	Store       string `yaml:"store"`        // bolt:PATH or redis://host:port/db

	// MinFree is the free space, in bytes, the embedded store wants on the
	// disk of its file to be ready (0: no check): below it a full disk is
	// near (bolt.Options.MinFree).
	MinFree int64 `yaml:"min_free"`
	// ServeDamagedStore starts the gateway on a store its start-up check
	// found damaged, serving what it can (readiness, the log and a metric
	// say so); false: such a store is refused at start.
	ServeDamagedStore bool `yaml:"serve_damaged_store"`

	// RedisRequireDurable refuses to start on a Redis that does not run
	// with appendonly yes and appendfsync always (README: the durability a
	// 202 relies on). Only for tests and throwaway setups: false.
	RedisRequireDurable bool `yaml:"redis_require_durable"`
	// RedisAckReplicas is how many Redis replicas must hold a commit
	// before it is acknowledged (-1: 1 behind Sentinel, 0 otherwise);
	// RedisAckTimeout bounds the wait (see RedisAcks).
	RedisAckReplicas int           `yaml:"redis_ack_replicas"`
	RedisAckTimeout  time.Duration `yaml:"redis_ack_timeout"`
	// RedisJournal is this gateway's journal of the changes it
	// acknowledged on a redis-sentinel:// store, kept until the group has
	// held them for RedisJournalSettle ("off": none; see JournalPath).
	RedisJournal       string        `yaml:"redis_journal"`
	RedisJournalSettle time.Duration `yaml:"redis_journal_settle"`

	// BodyLimit is the largest request body accepted, in bytes.
	BodyLimit int64 `yaml:"body_limit"`
	// InboxVisibility is how long a fetched delivery stays hidden before it
	// is offered again.
	InboxVisibility time.Duration `yaml:"inbox_visibility"`
	// ClockSkew tolerated on iat/exp.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// PolicyTimeout bounds one policy evaluation; a timeout is a denial.
	PolicyTimeout time.Duration `yaml:"policy_timeout"`
	// PolicyWatch is how often the policies folder is checked for changes
	// (0 disables watching).
	PolicyWatch time.Duration `yaml:"policy_watch"`
	// PolicyVerdicts is the folder where the policy versions that passed
	// their Rego tests and scenarios under this program are remembered, so
	// that a restart does not run them again ("off": always run them).
	// Default: policy-verdicts beside the bolt store file, or on Redis in
	// the user's cache directory (VerdictDir).
	PolicyVerdicts string `yaml:"policy_verdicts"`
	// AllowRSAOAEP256 and AllowEdDSA enable the optional algorithms of §3.
	AllowRSAOAEP256 bool `yaml:"allow_rsa_oaep_256"`
	AllowEdDSA      bool `yaml:"allow_eddsa"`
	// Pprof serves /debug/pprof/ on the operator listener.
	Pprof bool `yaml:"pprof"`
	// LogLevel: debug, info, warn, error.
	LogLevel string `yaml:"log_level"`

	// RateLimit is how many messages one sender may post per RateWindow
	// (0: unlimited); RateLimits overrides it per participant id.
	RateLimit  int            `yaml:"rate_limit"`
	RateWindow time.Duration  `yaml:"rate_window"`
	RateLimits map[string]int `yaml:"rate_limits"`

	// MaxInflight bounds the submissions doing their processor-bound work
	// (open, decide, seal) at once; the others wait in arrival order (0: no
	// bound, the default).
	MaxInflight int `yaml:"max_inflight"`

	// Replica names this gateway process among several on one store; each
	// replica keeps its own audit chain. Default: the host name.
	Replica string `yaml:"replica"`
	// AuditCheckpoint is how often the audit head is signed (and at shutdown).
	AuditCheckpoint time.Duration `yaml:"audit_checkpoint"`
	// Retention purge: how often stored payloads past their retention
	// period (R13) are deleted.
	PurgeEvery time.Duration `yaml:"purge_every"`

	// Delivery workers (push and file recipients).
	DeliveryAttempts   int           `yaml:"delivery_attempts"` // then dead-lettered
	DeliveryTimeout    time.Duration `yaml:"delivery_timeout"`  // per attempt
	DeliveryBackoff    time.Duration `yaml:"delivery_backoff"`  // first retry delay, doubled up to delivery_max_backoff
	DeliveryMaxBackoff time.Duration `yaml:"delivery_max_backoff"`

	// OpsTokenFile holds the bearer token the operator listener requires
	// for every endpoint but /healthz, /readyz and /metrics (dead letters,
	// audit export and subject report, pprof). Empty: those endpoints are
	// refused. The development setup makes it beside its PKI.
	OpsTokenFile string `yaml:"ops_token_file"`

	// DevPKI, when set, is the folder in which `serve` makes the demo
	// federation's PKI if it is missing (the development setup).
	DevPKI string `yaml:"dev_pki"`
}

// Default is the development setup of PROTOCOL §9.
func Default() Config {
	return Config{
		Listen:              "127.0.0.1:8443",
		OpsListen:           "127.0.0.1:9090",
		Registry:            "certs/dev/registry.yaml",
		GatewayKeys:         "certs/dev/gateway",
		Policies:            "policies",
		Store:               "bolt:data/xborder.db",
		MinFree:             32 << 20,
		BodyLimit:           1 << 20,
		RedisRequireDurable: true,
		RedisAckReplicas:    -1,
		RedisAckTimeout:     500 * time.Millisecond,
		RedisJournal:        "data/redis-journal.db",
		RedisJournalSettle:  30 * time.Second,
		InboxVisibility:     60 * time.Second,
		ClockSkew:           300 * time.Second,
		PolicyTimeout:       500 * time.Millisecond,
		PolicyWatch:         2 * time.Second,
		LogLevel:            "info",
		RateWindow:          time.Minute,
		AuditCheckpoint:     time.Minute,
		PurgeEvery:          time.Hour,
		DeliveryAttempts:    8,
		DeliveryTimeout:     10 * time.Second,
		DeliveryBackoff:     time.Second,
		DeliveryMaxBackoff:  5 * time.Minute,
		DevPKI:              "certs/dev",
		OpsTokenFile:        "certs/dev/ops.token",
	}
}

// Load reads a config file on top of the defaults, then the environment.
// With path "", only the defaults and the environment are used. Every
// problem is reported at once (errors.Join), each named by its YAML key and
// its environment variable: unknown keys (with the nearest known one),
// values of the wrong type, and what Validate refuses.
func Load(path string) (Config, error) {
	c := Default()
	base := ""
	var errs []error
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		// A configured deployment does not make development PKI unless
		// asked, and names its own operator token.
		c.DevPKI = ""
		c.OpsTokenFile = ""
		errs = append(errs, c.decode(path, b)...)
		base = filepath.Dir(path)
	}
	if err := c.fromEnv(os.LookupEnv); err != nil {
		errs = append(errs, err)
	}
	if base != "" {
		c.resolve(base)
	}
	errs = append(errs, c.Validate())
	return c, errors.Join(errs...)
}

// KeyName names a configuration key as an operator sets it: its YAML key and
// its environment variable.
func KeyName(name string) string {
	return fmt.Sprintf("%s (XBORDER_%s)", name, strings.ToUpper(name))
}

// fields maps each YAML key to its field in c.
func (c *Config) fields() map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	out := make(map[string]reflect.Value, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		out[strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]] = v.Field(i)
	}
	return out
}

// decode applies the YAML document b key by key, so that one bad value
// does not hide the others: a key that is unknown or whose value does not
// fit is reported, and the others are still read (and validated).
func (c *Config) decode(path string, b []byte) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []error{fmt.Errorf("config: %s: %w", path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file: the defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("config: %s line %d: want a mapping of keys (key: value), one per line", path, root.Line)}
	}
	fields := c.fields()
	seen := map[string]bool{}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f, ok := fields[k.Value]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("config: %s line %d: unknown key %q%s", path, k.Line, k.Value, didYouMean(k.Value, fields)))
			continue
		case seen[k.Value]:
			errs = append(errs, fmt.Errorf("config: %s line %d: %s is set twice", path, k.Line, KeyName(k.Value)))
			continue
		}
		seen[k.Value] = true
		// Into a copy: a value that does not fit leaves the default.
		val := reflect.New(f.Type())
		val.Elem().Set(f)
		if err := v.Decode(val.Interface()); err != nil {
			errs = append(errs, fmt.Errorf("config: %s line %d: %s: %q is not %s", path, v.Line, KeyName(k.Value), v.Value, want(f)))
			continue
		}
		f.Set(val.Elem())
	}
	return errs
}

// want says what a field's value must look like.
func want(f reflect.Value) string {
	switch f.Interface().(type) {
	case time.Duration:
		return "a duration (like 30s, 5m or 1h)"
	case bool:
		return "true or false"
	case int, int64:
		return "a whole number"
	case string:
		return "a string"
	case map[string]int:
		return "a map of participant id to a whole number"
	}
	return "a " + f.Kind().String()
}

// didYouMean suggests the known key nearest to an unknown one: the same
// words in another order (listen_ops for ops_listen), or a few letters off.
func didYouMean(unknown string, fields map[string]reflect.Value) string {
	words := func(s string) string {
		w := strings.Split(strings.ToLower(s), "_")
		slices.Sort(w)
		return strings.Join(w, "_")
	}
	best, bestDist := "", 3
	for name := range fields {
		if words(name) == words(unknown) {
			best, bestDist = name, -1
			break
		}
		if d := distance(strings.ToLower(unknown), name); d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// fromEnv applies XBORDER_<KEY> variables; a value that does not fit its
// key is reported and leaves the key as it was.
func (c *Config) fromEnv(lookup func(string) (string, bool)) error {
	var errs []error
	for key, f := range c.fields() {
		name := "XBORDER_" + strings.ToUpper(key)
		val, ok := lookup(name)
		if !ok {
			continue
		}
		var err error
		switch f.Interface().(type) {
		case string:
			f.SetString(val)
		case bool:
			var b bool
			if b, err = strconv.ParseBool(val); err == nil {
				f.SetBool(b)
			}
		case time.Duration:
			var d time.Duration
			if d, err = time.ParseDuration(val); err == nil {
				f.SetInt(int64(d))
			}
		case int, int64:
			var n int64
			if n, err = strconv.ParseInt(val, 10, 64); err == nil {
				f.SetInt(n)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config: environment %s (%s): %q is not %s", name, key, val, want(f)))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func (c *Config) resolve(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.Registry = abs(c.Registry)
	c.GatewayKeys = abs(c.GatewayKeys)
	c.Policies = abs(c.Policies)
	c.DevPKI = abs(c.DevPKI)
	if c.PolicyVerdicts != "off" {
		c.PolicyVerdicts = abs(c.PolicyVerdicts)
	}
	c.OpsTokenFile = abs(c.OpsTokenFile)
	if c.RedisJournal != "off" {
		c.RedisJournal = abs(c.RedisJournal)
	}
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); ok {
		c.Store = "bolt:" + abs(p)
	}
}

// VerdictDir is the folder of remembered policy verdicts, "" for none: the
// configured one, else beside the bolt store's file, else (Redis) in the
// user's cache directory. Never beside the config file, which may be
// mounted read-only, nor in the working directory.
func (c Config) VerdictDir() string {
	switch c.PolicyVerdicts {
	case "off":
		return ""
	case "":
		if kind, path := c.StoreKind(); kind == "bolt" {
			return filepath.Join(filepath.Dir(path), "policy-verdicts")
		}
		if dir, err := os.UserCacheDir(); err == nil {
			return filepath.Join(dir, "xborder", "policy-verdicts")
		}
		return ""
	}
	return c.PolicyVerdicts
}

// StoreKind returns "bolt" or "redis" and the path or URL.
func (c Config) StoreKind() (kind, target string) {
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); ok {
		return "bolt", p
	}
	if strings.HasPrefix(c.Store, "redis://") || strings.HasPrefix(c.Store, "rediss://") || strings.HasPrefix(c.Store, "redis-sentinel://") {
		return "redis", c.Store
	}
	return "", c.Store
}

// RedisAcks is redis_ack_replicas with its default resolved: 1 on a
// redis-sentinel:// store, 0 on any other.
func (c Config) RedisAcks() int {
	if c.RedisAckReplicas >= 0 {
		return c.RedisAckReplicas
	}
	if strings.HasPrefix(c.Store, "redis-sentinel://") {
		return 1
	}
	return 0
}

// JournalPath is the journal's file, "" for none: only a
// redis-sentinel:// store has one (a single primary has no failover to
// erase what it acknowledged), unless redis_journal is "off".
func (c Config) JournalPath() string {
	if !strings.HasPrefix(c.Store, "redis-sentinel://") || c.RedisJournal == "off" {
		return ""
	}
	return c.RedisJournal
}

// Validate reports every problem at once, each named by its YAML key and
// environment variable.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", KeyName(key), fmt.Sprintf(format, a...)))
	}
	for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"ops_listen", c.OpsListen}} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			add(l.name, "%q is not host:port", l.addr)
		}
	}
	if c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		add("ops_listen", "%q is listen's address too; they must differ", c.OpsListen)
	}
	for _, p := range []struct{ name, path string }{{"registry", c.Registry}, {"gateway_keys", c.GatewayKeys}, {"policies", c.Policies}} {
		if p.path == "" {
			add(p.name, "required")
		}
	}
	if kind, target := c.StoreKind(); kind == "" {
		add("store", "%q is neither bolt:PATH nor redis://host:port/db", c.Store)
	} else if target == "" || target == "redis://" {
		add("store", "empty %s target", kind)
	}
	if c.RedisAckReplicas < -1 || c.RedisAckReplicas > 16 {
		add("redis_ack_replicas", "%d is outside -1..16", c.RedisAckReplicas)
	}
	if c.RedisAckTimeout < 10*time.Millisecond || c.RedisAckTimeout > 30*time.Second {
		add("redis_ack_timeout", "%v is outside 10ms..30s", c.RedisAckTimeout)
	}
	if c.JournalPath() == "" && strings.HasPrefix(c.Store, "redis-sentinel://") && c.RedisJournal != "off" {
		add("redis_journal", "empty (a path, or off)")
	}
	if c.RedisJournalSettle < 100*time.Millisecond || c.RedisJournalSettle > time.Hour {
		add("redis_journal_settle", "%v is outside 100ms..1h", c.RedisJournalSettle)
	}
	if c.MinFree < 0 {
		add("min_free", "%d is negative (0: no check)", c.MinFree)
	}
	if c.BodyLimit < 1024 || c.BodyLimit > 64<<20 {
		add("body_limit", "%d is outside 1 KiB..64 MiB", c.BodyLimit)
	}
	if c.InboxVisibility < time.Second {
		add("inbox_visibility", "%v is less than 1s", c.InboxVisibility)
	}
	if c.ClockSkew < 0 || c.ClockSkew > time.Hour {
		add("clock_skew", "%v is not between 0 and 1h", c.ClockSkew)
	}
	if c.PolicyTimeout <= 0 {
		add("policy_timeout", "%v is not positive", c.PolicyTimeout)
	}
	if c.PolicyWatch < 0 {
		add("policy_watch", "%v is negative", c.PolicyWatch)
	}
	if c.MaxInflight < 0 {
		add("max_inflight", "%d is negative (0: no bound)", c.MaxInflight)
	}
	if c.RateLimit < 0 {
		add("rate_limit", "%d is negative (0: unlimited)", c.RateLimit)
	}
	if c.RateWindow < time.Second {
		add("rate_window", "%v is less than 1s", c.RateWindow)
	}
	ids := make([]string, 0, len(c.RateLimits))
	for id := range c.RateLimits {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if c.RateLimits[id] < 0 {
			add("rate_limits", "%s: %d is negative", id, c.RateLimits[id])
		}
	}
	if c.AuditCheckpoint < time.Second {
		add("audit_checkpoint", "%v is less than 1s", c.AuditCheckpoint)
	}
	if c.PurgeEvery < time.Second {
		add("purge_every", "%v is less than 1s", c.PurgeEvery)
	}
	if c.DeliveryAttempts < 1 {
		add("delivery_attempts", "%d is less than 1", c.DeliveryAttempts)
	}
	if c.DeliveryTimeout <= 0 {
		add("delivery_timeout", "%v is not positive", c.DeliveryTimeout)
	}
	if c.DeliveryBackoff <= 0 {
		add("delivery_backoff", "%v is not positive", c.DeliveryBackoff)
	}
	if c.DeliveryMaxBackoff < c.DeliveryBackoff {
		add("delivery_max_backoff", "%v is less than delivery_backoff (%v)", c.DeliveryMaxBackoff, c.DeliveryBackoff)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}
