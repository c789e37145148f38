// Package config reads and validates the gateway's configuration
// (PROTOCOL.md §9): a YAML file whose every key can also come from the
// environment as XBORDER_<KEY>.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
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

	// RedisRequireDurable refuses to start on a Redis that does not run
	// with appendonly yes and appendfsync always (README: the durability a
	// 202 relies on). Only for tests and throwaway setups: false.
	RedisRequireDurable bool `yaml:"redis_require_durable"`

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
	// Default: policy-verdicts beside the bolt store file, or beside the
	// config file on Redis.
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
		BodyLimit:           1 << 20,
		RedisRequireDurable: true,
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
// With path "", only the defaults and the environment are used. Unknown keys
// are refused.
func Load(path string) (Config, error) {
	c := Default()
	base := ""
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		// A configured deployment does not make development PKI unless
		// asked, and names its own operator token.
		c.DevPKI = ""
		c.OpsTokenFile = ""
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		base = filepath.Dir(path)
	}
	if err := c.fromEnv(os.LookupEnv); err != nil {
		return c, err
	}
	if base != "" {
		c.resolve(base)
	}
	return c, c.Validate()
}

// fromEnv applies XBORDER_<KEY> variables.
func (c *Config) fromEnv(lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		val, ok := lookup("XBORDER_" + strings.ToUpper(key))
		if !ok {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(val)
		case bool:
			b, err := strconv.ParseBool(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: XBORDER_%s: %w", strings.ToUpper(key), err))
				continue
			}
			f.SetBool(b)
		case time.Duration:
			d, err := time.ParseDuration(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: XBORDER_%s: %w", strings.ToUpper(key), err))
				continue
			}
			f.SetInt(int64(d))
		case int:
			n, err := strconv.Atoi(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: XBORDER_%s: %w", strings.ToUpper(key), err))
				continue
			}
			f.SetInt(int64(n))
		case int64:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: XBORDER_%s: %w", strings.ToUpper(key), err))
				continue
			}
			f.SetInt(n)
		}
	}
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
	if c.PolicyVerdicts == "" {
		if kind, _ := c.StoreKind(); kind != "bolt" {
			c.PolicyVerdicts = abs("policy-verdicts")
		}
	} else if c.PolicyVerdicts != "off" {
		c.PolicyVerdicts = abs(c.PolicyVerdicts)
	}
	c.OpsTokenFile = abs(c.OpsTokenFile)
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); ok {
		c.Store = "bolt:" + abs(p)
	}
}

// VerdictDir is the folder of remembered policy verdicts, "" for none.
func (c Config) VerdictDir() string {
	switch c.PolicyVerdicts {
	case "off":
		return ""
	case "":
		if kind, path := c.StoreKind(); kind == "bolt" {
			return filepath.Join(filepath.Dir(path), "policy-verdicts")
		}
		return "policy-verdicts"
	}
	return c.PolicyVerdicts
}

// StoreKind returns "bolt" or "redis" and the path or URL.
func (c Config) StoreKind() (kind, target string) {
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); ok {
		return "bolt", p
	}
	if strings.HasPrefix(c.Store, "redis://") || strings.HasPrefix(c.Store, "rediss://") {
		return "redis", c.Store
	}
	return "", c.Store
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("config: "+format, a...)) }
	for name, addr := range map[string]string{"listen": c.Listen, "ops_listen": c.OpsListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s: %q is not host:port", name, addr)
		}
	}
	if c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		add("listen and ops_listen must differ")
	}
	for name, p := range map[string]string{"registry": c.Registry, "gateway_keys": c.GatewayKeys, "policies": c.Policies} {
		if p == "" {
			add("%s is required", name)
		}
	}
	if kind, target := c.StoreKind(); kind == "" {
		add("store: %q is neither bolt:PATH nor redis://host:port/db", c.Store)
	} else if target == "" || target == "redis://" {
		add("store: empty %s target", kind)
	}
	if c.BodyLimit < 1024 || c.BodyLimit > 64<<20 {
		add("body_limit: %d is outside 1 KiB..64 MiB", c.BodyLimit)
	}
	if c.InboxVisibility < time.Second {
		add("inbox_visibility: at least 1s")
	}
	if c.ClockSkew < 0 || c.ClockSkew > time.Hour {
		add("clock_skew: between 0 and 1h")
	}
	if c.PolicyTimeout <= 0 {
		add("policy_timeout: must be positive")
	}
	if c.PolicyWatch < 0 {
		add("policy_watch: must not be negative")
	}
	if c.MaxInflight < 0 {
		add("max_inflight: %d is negative (0: no bound)", c.MaxInflight)
	}
	if c.RateLimit < 0 || c.RateWindow < time.Second {
		add("rate_limit must not be negative and rate_window at least 1s")
	}
	for id, n := range c.RateLimits {
		if n < 0 {
			add("rate_limits: %s: must not be negative", id)
		}
	}
	if c.AuditCheckpoint < time.Second || c.PurgeEvery < time.Second {
		add("audit_checkpoint and purge_every: at least 1s")
	}
	if c.DeliveryAttempts < 1 || c.DeliveryTimeout <= 0 || c.DeliveryBackoff <= 0 || c.DeliveryMaxBackoff < c.DeliveryBackoff {
		add("delivery_attempts ≥ 1, delivery_timeout and delivery_backoff > 0, delivery_max_backoff ≥ delivery_backoff")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level: %q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}
