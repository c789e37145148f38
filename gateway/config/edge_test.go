package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/config"
)

func writeEdge(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const edgeBase = "participant: KZ-MJ\nparticipant_keys: pki/KZ-MJ\nhub: https://hub.example:8443\nregistry: pki/registry.yaml\nstore: bolt:data/edge.db\n"

func TestLoadEdge(t *testing.T) {
	p := writeEdge(t, edgeBase+"deliver: file:inbox\nlisten: 127.0.0.1:8600\nops_listen: 127.0.0.1:8601\n")
	c, err := config.LoadEdge(p, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.RetentionPeriod() != 90*24*time.Hour {
		t.Errorf("retention by default %v, want 90 days", c.RetentionPeriod())
	}
	if c.ParticipantKeys != filepath.Join(dir, "pki/KZ-MJ") || c.StorePath() != filepath.Join(dir, "data/edge.db") || c.Deliver != "file:"+filepath.Join(dir, "inbox") {
		t.Errorf("paths not resolved against the file: %+v", c)
	}
	t.Setenv("XBORDER_HUB", "https://other:9443")
	t.Setenv("XBORDER_DELIVER", "local")
	t.Setenv("XBORDER_RETENTION", "8760h")
	if c, err = config.LoadEdge(p, ""); err != nil || c.Hub != "https://other:9443" || c.Deliver != "local" || c.RetentionPeriod() != 365*24*time.Hour {
		t.Errorf("environment over file: %+v %v", c, err)
	}
}

func TestLoadEdgeRefuses(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"listen beyond loopback without local tokens", edgeBase + "listen: 0.0.0.0:8600\n", "local_token_file is required"},
		{"listen on a LAN address without local tokens", edgeBase + "listen: 10.1.2.3:8600\n", "local_token_file is required"},
		{"unknown key", edgeBase + "policies: x\n", "field policies not found"},
		{"hub not https", strings.Replace(edgeBase, "https://hub.example:8443", "http://hub:80", 1), "hub:"},
		{"deliver unknown", edgeBase + "deliver: ftp://x\n", "deliver:"},
		{"no participant", strings.Replace(edgeBase, "participant: KZ-MJ\n", "", 1), "participant is required"},
		{"store not bolt", strings.Replace(edgeBase, "bolt:data/edge.db", "redis://x:1/0", 1), "store:"},
		{"retention shorter than Idempotency-Keys are kept", edgeBase + "retention: 24h\n", "retention:"},
		{"retention not a duration", edgeBase + "retention: 90d\n", "retention:"},
		{"pprof neither true nor false", edgeBase + "pprof: yes\n", "pprof:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.LoadEdge(writeEdge(t, c.body), "")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// With local tokens, any address.
	if _, err := config.LoadEdge(writeEdge(t, edgeBase+"listen: 0.0.0.0:8600\nlocal_token_file: tokens\n"), ""); err != nil {
		t.Errorf("with local_token_file: %v", err)
	}
}

func TestDefaultEdge(t *testing.T) {
	c, err := config.LoadEdge("", "KZ-MJ")
	if err != nil {
		t.Fatal(err)
	}
	if c.ParticipantKeys != filepath.Join("certs", "dev", "KZ-MJ") || c.Hub != "https://127.0.0.1:8443" || c.Listen != "127.0.0.1:8600" || c.Deliver != "local" {
		t.Errorf("development setup: %+v", c)
	}
	if !config.IsEdgeFile(writeEdge(t, edgeBase)) || config.IsEdgeFile(writeEdge(t, "listen: 127.0.0.1:8443\n")) {
		t.Error("IsEdgeFile tells an edge from a hub wrongly")
	}
}

// The README's edge table is the one generated from config.Edge, and it
// names exactly the keys.
func TestReadmeHasTheEdgeReference(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.EdgeReadmeSection(readme)
	if err != nil {
		t.Fatal(err)
	}
	if want := config.EdgeReferenceMarkdown(); got != want {
		t.Fatalf("README's edge configuration reference is out of date: run go generate ./gateway/config\n--- README:\n%s\n--- generated:\n%s", got, want)
	}
	var names []string
	for _, k := range config.EdgeReference() {
		if strings.TrimSpace(k.Doc) == "" {
			t.Errorf("%s is undocumented", k.Name)
		}
		names = append(names, k.Name)
	}
	// Issue 21's keys, in its order, then the ones added since: retention
	// (how long what is final is kept) and pprof (as the hub's).
	want := "participant,participant_keys,hub,registry,listen,ops_listen,ops_token_file,store,deliver,outbound_policies,local_token_file,retention,pprof"
	if strings.Join(names, ",") != want {
		t.Errorf("edge keys %v, want exactly %s", names, want)
	}
}
