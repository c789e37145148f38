package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xborder/xborder/gateway/config"
)

// Every key of Config is documented: a new key without a line in docs
// (reference.go) fails here.
func TestEveryKeyIsDocumented(t *testing.T) {
	if missing := config.Undocumented(); len(missing) > 0 {
		t.Fatalf("undocumented configuration keys (add them to docs in gateway/config/reference.go, then go generate ./gateway/config): %v", missing)
	}
}

// README's configuration reference is the one generated from Config, so
// that it lists every key with its default.
func TestReadmeHasTheReference(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.ReadmeSection(readme)
	if err != nil {
		t.Fatal(err)
	}
	if want := config.ReferenceMarkdown(); got != want {
		t.Fatalf("README's configuration reference is out of date: run go generate ./gateway/config\n--- README:\n%s\n--- generated:\n%s", got, want)
	}
	for _, k := range config.Reference() {
		if !strings.Contains(got, "| `"+k.Name+"` |") {
			t.Errorf("README lacks %s", k.Name)
		}
	}
}

func TestReferenceDefaults(t *testing.T) {
	byName := map[string]config.Key{}
	for _, k := range config.Reference() {
		byName[k.Name] = k
	}
	for name, want := range map[string]string{"policy_timeout": "500ms", "rate_window": "1m", "purge_every": "1h",
		"delivery_max_backoff": "5m", "listen": "127.0.0.1:8443", "redis_require_durable": "true"} {
		if byName[name].Default != want {
			t.Errorf("%s: default %q, want %q", name, byName[name].Default, want)
		}
	}
	if k := byName["rate_limits"]; k.Env != "" || k.Type != "map" {
		t.Errorf("rate_limits: %+v (the environment sets scalars only)", k)
	}
}
