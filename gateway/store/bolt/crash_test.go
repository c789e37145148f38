package bolt_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store"
	"github.com/xborder/xborder/gateway/store/bolt"
)

const crashEnv = "XBORDER_BOLT_CRASH_DB"

// TestKill9 kills a process that is accepting messages (SIGKILL, no chance to
// close the file) and checks that every Accept it saw return is there.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 30 {
		if id, ok := strings.CutPrefix(sc.Text(), "accepted "); ok {
			acked = append(acked, id)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < 30 {
		t.Fatalf("child accepted only %d messages before it stopped", len(acked))
	}

	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	for _, id := range acked {
		if _, err := s.Message(context.Background(), "unhcr", id); err != nil {
			t.Errorf("accepted %s lost: %v", id, err)
		}
	}
	if n, err := s.Depth(context.Background(), "ke-dra"); err != nil || n < len(acked) {
		t.Errorf("Depth = %d, %v; want at least %d", n, err, len(acked))
	}
}

// TestKill9Child is the process TestKill9 kills; it does nothing otherwise.
func TestKill9Child(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestKill9")
	}
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; ; i++ {
		id := fmt.Sprintf("m%06d", i)
		m := &store.Message{From: "unhcr", ID: id, To: "ke-dra", CreatedAt: now}
		ds := []store.Delivery{{ID: "d-" + id, Recipient: "ke-dra", Envelope: []byte("jwe")}}
		if _, err := s.Accept(context.Background(), m, ds); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("accepted %s\n", id)
	}
}
