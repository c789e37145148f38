package kv_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/store/kv"
)

// childEnv marks the second process of twoProcesses.
const childEnv = "KVTEST_CHILD"

// perProcess is how many increments each process makes.
const perProcess = 200

// isChild says this test binary was started by twoProcesses: the test
// opens the store named in its environment and calls child.
func isChild() bool { return os.Getenv(childEnv) != "" }

// twoProcesses: this process and a second one — the test binary run again
// for the calling test, with env added to its environment, where the test
// calls child on the same store — increment one counter at once, each
// retrying on kv.ErrConflict; the count must be exact.
func twoProcesses(t *testing.T, db kv.DB, env ...string) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	conflicts, err := half(db, "parent", "child", exited)
	if err != nil {
		cmd.Process.Kill()
		<-exited
		t.Fatalf("%v\nthe second process:\n%s", err, out)
	}
	if err := <-exited; err != nil {
		t.Fatalf("the second process: %v\n%s", err, out)
	}
	if n := count(t, db); n != 2*perProcess {
		t.Errorf("count %d after %d increments in each of two processes", n, perProcess)
	}
	t.Logf("this process retried %d conflicts", conflicts)
}

// child is the second process's half of twoProcesses.
func child(t *testing.T, db kv.DB) {
	conflicts, err := half(db, "child", "parent", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the second process retried %d conflicts", conflicts)
}

// half announces me, waits for the other process's announcement (so that
// both increment at once), then increments.
func half(db kv.DB, me, other string, exited <-chan error) (int, error) {
	if err := db.Update(ctx, func(tx kv.Tx) error { return tx.Put("barrier", []byte(me), []byte("1")) }); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(time.Minute) // bounds a failure only
	for {
		var ok bool
		if err := db.View(ctx, func(r kv.Reader) (err error) {
			_, ok, err = r.Get("barrier", []byte(other))
			return err
		}); err != nil {
			return 0, err
		}
		if ok {
			break
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("the second process ended before it started: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return 0, errors.New("the other process never announced itself")
		}
		time.Sleep(5 * time.Millisecond)
	}
	total := 0
	for range perProcess {
		c, err := increment(ctx, db)
		if err != nil {
			return total, err
		}
		total += c
	}
	return total, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
