package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

//go:generate go run ./internal/readmegen ../../README.md

// docs documents every key of Config; a key missing here fails
// TestEveryKeyIsDocumented, and README's table is generated from it
// (go generate ./gateway/config; TestReadmeHasTheReference checks it).
var docs = map[string]string{
	"listen":                "Exchange API address (mTLS, TLS 1.3).",
	"ops_listen":            "Operator listener address (plain HTTP): `/healthz`, `/readyz`, `/metrics` for loopback and private networks; dead letters, audit export and subject report with the operator token. Keep it on loopback or a private network.",
	"registry":              "Trust registry (YAML): participants, roles, keys, certificates, delivery. Reloaded when it changes (every `policy_watch`).",
	"gateway_keys":          "Folder of the gateway's own keys: `tls.crt`, `tls.key`, `sign.jwk`, `enc.jwk`, `audit.key` (and earlier keys kept after `pki rotate`).",
	"policies":              "Folder of Rego modules, their tests, `data.json` and `scenarios/`.",
	"store":                 "`bolt:PATH` (embedded, one process), `redis://host:port/db` (shared by replicas) or `redis-sentinel://HOST:PORT,HOST:PORT,HOST:PORT/MASTER_NAME/DB` (the same behind Redis Sentinel: the Sentinels' addresses, the master's name, the database).",
	"min_free":              "Free space, in bytes, the embedded store wants on the disk of its file to be ready (`/readyz` and the log say how much is free when it is not); `0`: no check. Not used on Redis.",
	"serve_damaged_store":   "Start on an embedded store that the start-up check (`xborder store check`'s reading of every page and record) finds damaged, serving what can still be read; `/readyz` (`store_check: degraded`), the log and `xborder_store_damaged` say so. `false`: refuse to start, naming the first problem.",
	"redis_ack_replicas":    "Redis replicas that must hold a commit before it is acknowledged (`WAIT`, or `WAITAOF` on Redis 7.2+, on the commit's own connection); fewer within `redis_ack_timeout`: the change is on the primary but not safe, answered 503 `outcome_unknown`. `-1` (default): 1 on a `redis-sentinel://` store, 0 on `redis://`.",
	"redis_ack_timeout":     "How long a commit waits for `redis_ack_replicas` (10ms to 30s).",
	"redis_journal":         "On a `redis-sentinel://` store: this gateway's journal (a bbolt file on its own disk, fsynced before each answer) of every change it acknowledged, kept until the Redis group has held it for `redis_journal_settle`; after a switch of primary, what the new primary lacks is made again (README \"Operations\"). Relative paths are resolved against the config file's folder; give each gateway its own, on a disk that outlives its container. `off`: none (a failover can then erase acknowledged changes).",
	"redis_journal_settle":  "How long the Redis group must hold a change — the same primary, every attached replica past it — before it leaves the journal (100ms to 1h).",
	"redis_require_durable": "Refuse to start on a Redis without `appendonly yes` and `appendfsync always` (the durability a 202 relies on). `false` only for tests and throwaway setups.",
	"body_limit":            "Largest request body accepted, in bytes (1 KiB to 64 MiB).",
	"inbox_visibility":      "How long a fetched inbox delivery stays hidden before it is offered again (at least 1s).",
	"clock_skew":            "Tolerance on a message's `iat`/`exp` (0 to 1h).",
	"policy_timeout":        "Deadline of one policy evaluation; a decision that misses it is a denial (R1). Decisions run on one evaluator per processor, in order of arrival, and the deadline starts when an evaluator takes the decision: a burst queues (bounded by the request) rather than turning into denials. It also bounds each decision of the scenarios run at start-up and at each policy reload.",
	"policy_watch":          "How often `policies/` and the registry are checked for edits (`0s`: never).",
	"policy_verdicts":       "Folder where the policy versions that passed their Rego tests and scenarios under this very program are remembered (by policy digest and executable digest), so that a restart serves at once instead of testing them again; a changed policy is always tested before it serves. `off`: test at every start. Default: `policy-verdicts` beside the bolt store file; on Redis, `xborder/policy-verdicts` in the user's cache directory (`$XDG_CACHE_HOME` or `~/.cache`), none if there is no such directory.",
	"allow_rsa_oaep_256":    "Also accept `RSA-OAEP-256` key wrapping (PROTOCOL §3, optional).",
	"allow_eddsa":           "Also accept `EdDSA` signatures (PROTOCOL §3, optional).",
	"pprof":                 "Serve `/debug/pprof/` on the operator listener (with the operator token).",
	"log_level":             "`debug`, `info`, `warn` or `error`; logs are JSON lines on stderr.",
	"rate_limit":            "Messages one sender may post per `rate_window` (0: unlimited); shared by replicas on Redis.",
	"rate_window":           "The window of `rate_limit` (at least 1s).",
	"rate_limits":           "Per-participant overrides of `rate_limit` (`{ID: N}`).",
	"max_inflight":          "Submissions opened, decided and sealed at once; the others wait in arrival order (0: no bound).",
	"replica":               "This process's name among replicas on one store; each replica keeps its own audit chain, so keep it stable across restarts (default: the host name).",
	"audit_checkpoint":      "How often the audit chain's head is signed (and at shutdown).",
	"purge_every":           "How often stored payloads past their retention period (R13) are deleted.",
	"delivery_attempts":     "Push delivery attempts before a delivery is dead-lettered.",
	"delivery_timeout":      "Deadline of one push delivery attempt.",
	"delivery_backoff":      "First retry delay of a push delivery, doubled up to `delivery_max_backoff`.",
	"delivery_max_backoff":  "Longest retry delay of a push delivery.",
	"ops_token_file":        "File holding the operator's bearer token (one line, at least 32 characters; `xborder pki init` makes `ops.token`, mode 0600). Without it, dead letters, audit export and subject report are refused (403). With a config file, only if set.",
	"dev_pki":               "Development setup: the folder where `serve` makes the demo federation's PKI and operator token if missing. With a config file, only if set.",
}

// Key describes one configuration key.
type Key struct {
	Name    string // YAML key
	Env     string // environment variable, "" when the key is read from the file only
	Type    string // string, bool, duration, integer, map
	Default string // in the development setup (no config file)
	Doc     string
}

// Reference lists every key of Config in declaration order.
func Reference() []Key {
	def := reflect.ValueOf(Default())
	t := def.Type()
	var out []Key
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		k := Key{Name: name, Env: "XBORDER_" + strings.ToUpper(name), Doc: docs[name]}
		switch v := def.Field(i).Interface().(type) {
		case string:
			k.Type, k.Default = "string", v
		case bool:
			k.Type, k.Default = "bool", fmt.Sprint(v)
		case time.Duration:
			k.Type, k.Default = "duration", shortDuration(v)
		case int, int64:
			k.Type, k.Default = "integer", fmt.Sprint(v)
		default:
			k.Type, k.Env = "map", "" // fromEnv reads scalars only
		}
		out = append(out, k)
	}
	return out
}

// Undocumented lists the keys of Config that docs does not describe.
func Undocumented() []string {
	var out []string
	for _, k := range Reference() {
		if strings.TrimSpace(k.Doc) == "" {
			out = append(out, k.Name)
		}
	}
	return out
}

// shortDuration writes 1m for 1m0s and 1h for 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ReferenceMarkdown is the README's configuration table.
func ReferenceMarkdown() string {
	var b strings.Builder
	b.WriteString("| key | environment | type | default | what it sets |\n|---|---|---|---|---|\n")
	for _, k := range Reference() {
		env, def := "(file only)", "—"
		if k.Env != "" {
			env = "`" + k.Env + "`"
		}
		if k.Default != "" {
			def = "`" + k.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Name, env, k.Type, def, strings.ReplaceAll(k.Doc, "|", `\|`))
	}
	return b.String()
}

// The README's generated section lies between these markers.
const (
	ReadmeBegin = "<!-- config reference: generated from gateway/config (go generate ./gateway/config); do not edit -->\n"
	ReadmeEnd   = "<!-- end of config reference -->\n"
)

// ReadmeSection returns what lies between the markers of readme.
func ReadmeSection(readme []byte) (string, error) {
	_, rest, ok := bytes.Cut(readme, []byte(ReadmeBegin))
	if !ok {
		return "", errors.New("config: README has no config reference begin marker")
	}
	section, _, ok := bytes.Cut(rest, []byte(ReadmeEnd))
	if !ok {
		return "", errors.New("config: README has no config reference end marker")
	}
	return string(section), nil
}

// WithReference returns readme with the generated table between its markers.
func WithReference(readme []byte) ([]byte, error) {
	before, rest, ok := bytes.Cut(readme, []byte(ReadmeBegin))
	if !ok {
		return nil, errors.New("config: README has no config reference begin marker")
	}
	_, after, ok := bytes.Cut(rest, []byte(ReadmeEnd))
	if !ok {
		return nil, errors.New("config: README has no config reference end marker")
	}
	var out bytes.Buffer
	out.Write(before)
	out.WriteString(ReadmeBegin)
	out.WriteString(ReferenceMarkdown())
	out.WriteString(ReadmeEnd)
	out.Write(after)
	return out.Bytes(), nil
}
