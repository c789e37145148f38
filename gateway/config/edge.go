package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Edge is the configuration of `xborder edge`, a participant's own gateway
// (issue 21): its own file, its own keys, its own embedded store. Every key
// is a string, and every key also comes from the environment as
// XBORDER_<KEY>, as for serve. Relative paths are resolved against the
// directory of the config file.
type Edge struct {
	Participant      string `yaml:"participant"`
	ParticipantKeys  string `yaml:"participant_keys"`
	Hub              string `yaml:"hub"`
	Registry         string `yaml:"registry"`
	Listen           string `yaml:"listen"`
	OpsListen        string `yaml:"ops_listen"`
	OpsTokenFile     string `yaml:"ops_token_file"`
	Store            string `yaml:"store"`
	Deliver          string `yaml:"deliver"`
	OutboundPolicies string `yaml:"outbound_policies"`
	LocalTokenFile   string `yaml:"local_token_file"`
	Retention        string `yaml:"retention"`
	Pprof            string `yaml:"pprof"`
}

// DefaultEdgeRetention is how long the edge keeps what is final (a
// finished message's record with the hub's receipt or problem, a
// hand-over marker, a quarantined delivery) unless retention says
// otherwise: 90 days.
const DefaultEdgeRetention = "2160h"

// MinEdgeRetention is the shortest retention allowed: longer than an
// Idempotency-Key is kept (25 h, purged hourly), so that a repeat always
// finds the message its key made.
const MinEdgeRetention = 48 * time.Hour

// edgeDocs documents every key of Edge; README's edge table is generated
// from it (go generate ./gateway/config).
var edgeDocs = map[string]string{
	"participant":       "The participant this edge speaks for (its registry id, e.g. `KZ-MJ`). Required.",
	"participant_keys":  "The participant's folder as `xborder pki init` writes it: `tls.crt`, `tls.key`, `sign.jwk`, `enc.jwk`. The keys never leave it.",
	"hub":               "The hub's exchange URL (`https://host:port`). Its TLS certificate must chain to a trust anchor of `registry`; its keys are read from its `/v1/jwks` over that connection.",
	"registry":          "The trust registry the edge pins the hub (trust anchors) and the participants (signing keys, suspension) by. The same file as the hub's, or a copy. Reloaded when its files change (checked every 2 s), audited; a registry that does not load or no longer names this participant with its signing key is refused and the one in force keeps serving.",
	"listen":            "Local API address (plain HTTP, for the participant's own systems). A listener beyond loopback requires `local_token_file`; the edge refuses to start otherwise.",
	"ops_listen":        "Operator listener address: `/healthz`, `/readyz`, `/metrics`.",
	"ops_token_file":    "File holding the operator's bearer token (as the hub's).",
	"store":             "`bolt:PATH`: the edge's embedded outbox, inbox and audit chain.",
	"deliver":           "How incoming deliveries reach the participant's systems: `local` (`GET /v1/inbox` on the local API), `file:DIR` (one `DELIVERY_ID.json` each, written whole or not at all) or `https://…` (POSTed as JSON, `Idempotency-Key: DELIVERY_ID`).",
	"outbound_policies": "Optional folder of the participant's own outbound policy (Rego, `data.json`, tests); entrypoint `data.xborder.outbound.decision`. When set, a message it does not allow is refused with 403 `policy_denied` and never sent (default deny).",
	"local_token_file":  "File of local API tokens, one per line: `NAME TOKEN` (or a lone `TOKEN`, named `token`), each token at least 32 characters. When set, every local call needs `Authorization: Bearer TOKEN`; NAME is the caller the outbound policy sees.",
	"retention":         "How long the edge keeps what is final — a finished message's record with the hub's receipt (or problem), a hand-over marker, a quarantined delivery — counted from when it became final, as a Go duration (`2160h` = 90 days; at least `48h`). Then it is deleted, hourly, each with an audit entry (`forgotten` for a message, `purged` for a delivery's record); `GET /v1/outbox/{id}` answers 404 after. Queued messages and deliveries not yet acknowledged are never purged; the audit chain is kept. Set it to the longest period the participant's evidence rules require.",
	"pprof":             "`true`: serve `/debug/pprof/` on the operator listener (with the operator token), as the hub's `pprof`. Empty or `false`: not served.",
}

// DefaultEdge is the development setup for participant id: the demo
// PKI's folder of that participant, the hub at serve's default address.
func DefaultEdge(id string) Edge {
	return Edge{
		Participant:     id,
		ParticipantKeys: filepath.Join("certs", "dev", id),
		Hub:             "https://127.0.0.1:8443",
		Registry:        "certs/dev/registry.yaml",
		Listen:          "127.0.0.1:8600",
		OpsListen:       "127.0.0.1:8601",
		OpsTokenFile:    "certs/dev/ops.token",
		Store:           "bolt:" + filepath.Join("data", "edge-"+id+".db"),
		Deliver:         "local",
		Retention:       DefaultEdgeRetention,
	}
}

// LoadEdge reads an edge config file (unknown keys refused), then the
// environment, and validates it. With path "", the development setup of
// as (DefaultEdge) is the base.
func LoadEdge(path, as string) (Edge, error) {
	var c Edge
	base := ""
	if path == "" {
		c = DefaultEdge(as)
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		c = Edge{Listen: "127.0.0.1:8600", OpsListen: "127.0.0.1:8601", Deliver: "local", Retention: DefaultEdgeRetention}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		base = filepath.Dir(path)
		if as != "" {
			c.Participant = as
		}
	}
	c.fromEnv(os.LookupEnv)
	if base != "" {
		c.resolve(base)
	}
	return c, c.Validate()
}

// IsEdgeFile reports whether the YAML file at path is an edge's
// configuration (it names a participant), so that the tools that take
// --config (health) can tell an edge from a hub.
func IsEdgeFile(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var m map[string]any
	if yaml.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m["participant"]
	return ok
}

func (c *Edge) fromEnv(lookup func(string) (string, bool)) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if val, ok := lookup("XBORDER_" + strings.ToUpper(key)); ok {
			v.Field(i).SetString(val)
		}
	}
}

func (c *Edge) resolve(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.ParticipantKeys = abs(c.ParticipantKeys)
	c.Registry = abs(c.Registry)
	c.OpsTokenFile = abs(c.OpsTokenFile)
	c.OutboundPolicies = abs(c.OutboundPolicies)
	c.LocalTokenFile = abs(c.LocalTokenFile)
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); ok {
		c.Store = "bolt:" + abs(p)
	}
	if d, ok := strings.CutPrefix(c.Deliver, "file:"); ok {
		c.Deliver = "file:" + abs(d)
	}
}

// RetentionOrDefault is retention, or its default when it is not set.
func (c Edge) RetentionOrDefault() string {
	if c.Retention == "" {
		return DefaultEdgeRetention
	}
	return c.Retention
}

// RetentionPeriod is retention as a duration (valid once Validate passed).
func (c Edge) RetentionPeriod() time.Duration {
	d, _ := time.ParseDuration(c.RetentionOrDefault())
	return d
}

// StorePath is the bbolt file of store.
func (c Edge) StorePath() string { return strings.TrimPrefix(c.Store, "bolt:") }

// IsLoopback reports whether a listen address binds loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate reports every problem at once.
func (c Edge) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("config: "+format, a...)) }
	if c.Participant == "" {
		add("participant is required (or run `xborder edge --as ID`)")
	}
	for name, p := range map[string]string{"participant_keys": c.ParticipantKeys, "registry": c.Registry, "hub": c.Hub} {
		if p == "" {
			add("%s is required", name)
		}
	}
	if c.Hub != "" {
		if u, err := url.Parse(c.Hub); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			add("hub: %q is not https://host:port", c.Hub)
		}
	}
	for name, addr := range map[string]string{"listen": c.Listen, "ops_listen": c.OpsListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s: %q is not host:port", name, addr)
		}
	}
	if c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") {
		add("listen and ops_listen must differ")
	}
	if !IsLoopback(c.Listen) && c.LocalTokenFile == "" {
		add("listen: %q is beyond loopback: local_token_file is required, so that only the participant's own systems use the local API", c.Listen)
	}
	if d, err := time.ParseDuration(c.RetentionOrDefault()); err != nil || d < MinEdgeRetention {
		add("retention: %q is not a duration of at least %s (e.g. 2160h for 90 days)", c.Retention, MinEdgeRetention)
	}
	if c.Pprof != "" && c.Pprof != "true" && c.Pprof != "false" {
		add("pprof: %q is neither true nor false", c.Pprof)
	}
	if p, ok := strings.CutPrefix(c.Store, "bolt:"); !ok || p == "" {
		add("store: %q is not bolt:PATH", c.Store)
	}
	switch {
	case c.Deliver == "local":
	case strings.HasPrefix(c.Deliver, "file:"):
		if strings.TrimPrefix(c.Deliver, "file:") == "" {
			add("deliver: file: needs a folder (file:DIR)")
		}
	case strings.HasPrefix(c.Deliver, "https://"):
		if u, err := url.Parse(c.Deliver); err != nil || u.Host == "" || u.User != nil {
			add("deliver: %q is not an https:// URL", c.Deliver)
		}
	default:
		add("deliver: %q is neither local, file:DIR nor https://…", c.Deliver)
	}
	return errors.Join(errs...)
}

// EdgeReference lists every key of Edge in declaration order; defaults are
// the development setup's for participant KZ-MJ.
func EdgeReference() []Key {
	def := reflect.ValueOf(DefaultEdge("KZ-MJ"))
	t := def.Type()
	out := make([]Key, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		out = append(out, Key{Name: name, Env: "XBORDER_" + strings.ToUpper(name), Type: "string",
			Default: def.Field(i).String(), Doc: edgeDocs[name]})
	}
	return out
}

// EdgeReferenceMarkdown is the README's table of the edge's keys.
func EdgeReferenceMarkdown() string {
	var b strings.Builder
	b.WriteString("| key | environment | default (`--as KZ-MJ`) | what it sets |\n|---|---|---|---|\n")
	for _, k := range EdgeReference() {
		def := "—"
		if k.Default != "" {
			def = "`" + k.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", k.Name, k.Env, def, strings.ReplaceAll(k.Doc, "|", `\|`))
	}
	return b.String()
}

// The README's generated edge table lies between these markers.
const (
	EdgeReadmeBegin = "<!-- edge config reference: generated from gateway/config (go generate ./gateway/config); do not edit -->\n"
	EdgeReadmeEnd   = "<!-- end of edge config reference -->\n"
)

// EdgeReadmeSection returns what lies between the edge markers of readme.
func EdgeReadmeSection(readme []byte) (string, error) {
	_, rest, ok := bytes.Cut(readme, []byte(EdgeReadmeBegin))
	if !ok {
		return "", errors.New("config: README has no edge config reference begin marker")
	}
	section, _, ok := bytes.Cut(rest, []byte(EdgeReadmeEnd))
	if !ok {
		return "", errors.New("config: README has no edge config reference end marker")
	}
	return string(section), nil
}

// WithEdgeReference returns readme with the generated edge table between
// its markers.
func WithEdgeReference(readme []byte) ([]byte, error) {
	before, rest, ok := bytes.Cut(readme, []byte(EdgeReadmeBegin))
	if !ok {
		return nil, errors.New("config: README has no edge config reference begin marker")
	}
	_, after, ok := bytes.Cut(rest, []byte(EdgeReadmeEnd))
	if !ok {
		return nil, errors.New("config: README has no edge config reference end marker")
	}
	var out bytes.Buffer
	out.Write(before)
	out.WriteString(EdgeReadmeBegin)
	out.WriteString(EdgeReferenceMarkdown())
	out.WriteString(EdgeReadmeEnd)
	out.Write(after)
	return out.Bytes(), nil
}
