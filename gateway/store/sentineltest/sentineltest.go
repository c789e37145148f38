// Package sentineltest runs a real Redis Sentinel group for tests: a
// primary, two replicas and three Sentinels, all redis-server processes on
// free ports of 127.0.0.1, each in a directory the test owns. Data nodes
// are durable (appendonly yes, appendfsync always, no snapshots) and sync
// replicas at once (repl-diskless-sync-delay 0); Sentinels call a primary
// down after DownAfter. Nodes can be killed (SIGKILL), frozen (SIGSTOP),
// thawed (SIGCONT) and restarted on the same port and directory.
package sentineltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xborder/xborder/gateway/store/redistest"
)

// Master is the name the Sentinels monitor.
const Master = "xmaster"

// DownAfter is the Sentinels' down-after-milliseconds: below 2 s, a loaded
// machine sees spurious failovers.
const DownAfter = 2000 * time.Millisecond

// readyTimeout bounds the waits for the group to form and to settle.
const readyTimeout = 30 * time.Second

// Group is a running Sentinel group.
type Group struct {
	t         testing.TB
	Data      []*Node // Data[0] is the first primary
	Sentinels []*Node
}

// Node is one redis-server process.
type Node struct {
	Name string
	port int
	dir  string
	args []string // a data node's, after its port and directory
	conf string   // a Sentinel's config file

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedWriter
}

// Addr is 127.0.0.1:port.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// Start runs a group for the test and waits until the replicas are in sync
// and every Sentinel knows the two replicas and the two other Sentinels
// (before that, a failover cannot be agreed). It is killed when the test ends.
func Start(t testing.TB) *Group {
	t.Helper()
	if _, err := os.Stat(redistest.Binary); err != nil {
		t.Fatalf("sentineltest: %s not found: %v", redistest.Binary, err)
	}
	g := &Group{t: t}
	base := t.TempDir() // before the kill's cleanup: cleanups run last first
	t.Cleanup(g.kill)
	ports, err := freePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
			"--repl-diskless-sync-delay", "0", "--daemonize", "no", "--logfile", ""}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
		}
		n := &Node{Name: fmt.Sprintf("data%d", i), port: ports[i], dir: filepath.Join(base, fmt.Sprintf("data%d", i)), args: args}
		g.Data = append(g.Data, n)
	}
	for i := range 3 {
		n := &Node{Name: fmt.Sprintf("sentinel%d", i), port: ports[3+i], dir: filepath.Join(base, fmt.Sprintf("sentinel%d", i))}
		g.Sentinels = append(g.Sentinels, n)
	}
	for _, n := range append(append([]*Node{}, g.Data...), g.Sentinels...) {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range g.Sentinels {
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, n.port, n.dir, Master, ports[0], Master, DownAfter.Milliseconds(), Master, Master)
		path := filepath.Join(n.dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.conf = path
	}
	for _, n := range append(append([]*Node{}, g.Data...), g.Sentinels...) {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := g.WaitSynced(ctx, g.Data[0], 2); err != nil {
		t.Fatal(err)
	}
	if err := g.waitSentinels(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// URL is the group as a redis-sentinel:// store URL, database 0.
func (g *Group) URL() string {
	var a []string
	for _, s := range g.Sentinels {
		a = append(a, s.Addr())
	}
	return "redis-sentinel://" + strings.Join(a, ",") + "/" + Master + "/0"
}

// Client is a plain client to a node (no retries); the caller closes it.
func (n *Node) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialerRetries: 1})
}

// Primary asks a Sentinel that answers which data node is the primary.
func (g *Group) Primary(ctx context.Context) (*Node, error) {
	var last error
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialerRetries: 1})
		a, err := sc.GetMasterAddrByName(ctx, Master).Result()
		sc.Close()
		if err != nil {
			last = err
			continue
		}
		return g.node(net.JoinHostPort(a[0], a[1]))
	}
	return nil, fmt.Errorf("sentineltest: no Sentinel names the primary: %w", last)
}

func (g *Group) node(addr string) (*Node, error) {
	for _, n := range g.Data {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("sentineltest: %s is no data node", addr)
}

// Switches subscribes to +switch-master on every Sentinel and sends the
// new primary of each switch once (the first Sentinel to announce it);
// the subscription ends with ctx. It returns once the subscriptions are
// in place, so that no switch after it is missed.
func (g *Group) Switches(ctx context.Context) (<-chan *Node, error) {
	ch := make(chan *Node, 16)
	msgs := make(chan string, 64)
	var subs []*redis.PubSub
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialerRetries: 1})
		ps := sc.Subscribe(ctx, "+switch-master")
		if _, err := ps.Receive(ctx); err != nil {
			ps.Close()
			sc.Close()
			for _, p := range subs {
				p.Close()
			}
			return nil, fmt.Errorf("sentineltest: subscribing on %s: %w", s.Name, err)
		}
		subs = append(subs, ps)
		go func() {
			defer sc.Close()
			defer ps.Close()
			c := ps.Channel()
			for {
				select {
				case <-ctx.Done():
					return
				case m, ok := <-c:
					if !ok {
						return
					}
					msgs <- m.Payload
				}
			}
		}()
	}
	go func() {
		// "<master> <old ip> <old port> <new ip> <new port>", from each Sentinel.
		seen := map[string]bool{}
		for {
			select {
			case <-ctx.Done():
				return
			case p := <-msgs:
				f := strings.Fields(p)
				if len(f) != 5 || f[0] != Master || seen[p] {
					continue
				}
				seen[p] = true
				if n, err := g.node(net.JoinHostPort(f[3], f[4])); err == nil {
					select {
					case ch <- n:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return ch, nil
}

// WaitSynced waits until primary answers as a master with at least n
// replicas online.
func (g *Group) WaitSynced(ctx context.Context, primary *Node, n int) error {
	c := primary.Client()
	defer c.Close()
	return poll(ctx, func() error {
		s, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(s, "role:master") {
			return errors.New("not a master")
		}
		if got := strings.Count(s, "state=online"); got < n {
			return fmt.Errorf("%d replicas online, want %d", got, n)
		}
		return nil
	}, fmt.Sprintf("%s with %d replicas online", primary.Name, n))
}

// WaitReplicaOf waits until node is a replica of primary with its link up.
func (g *Group) WaitReplicaOf(ctx context.Context, node, primary *Node) error {
	c := node.Client()
	defer c.Close()
	return poll(ctx, func() error {
		s, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(s, "role:slave") || !strings.Contains(s, "master_port:"+strconv.Itoa(primary.port)+"\r") ||
			!strings.Contains(s, "master_link_status:up") {
			return errors.New("not (yet) an attached replica")
		}
		return nil
	}, fmt.Sprintf("%s replica of %s", node.Name, primary.Name))
}

func (g *Group) waitSentinels(ctx context.Context) error {
	for _, s := range g.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialerRetries: 1})
		err := poll(ctx, func() error {
			r, err := sc.Replicas(ctx, Master).Result()
			if err != nil {
				return err
			}
			o, err := sc.Sentinels(ctx, Master).Result()
			if err != nil {
				return err
			}
			if len(r) < 2 || len(o) < 2 {
				return fmt.Errorf("knows %d replicas and %d Sentinels", len(r), len(o))
			}
			return nil
		}, s.Name+" knowing the group")
		sc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// poll runs f until it returns nil or ctx ends; the group's state changes
// by itself (replication, Sentinel's hello messages) with nothing to
// subscribe to.
func poll(ctx context.Context, f func() error, what string) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sentineltest: waiting for %s: %v (%w)", what, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return errors.New("sentineltest: " + n.Name + " already running")
	}
	args := []string{n.conf, "--sentinel"}
	if n.conf == "" {
		args = append([]string{"--port", strconv.Itoa(n.port), "--dir", n.dir}, n.args...)
	}
	cmd := exec.Command(redistest.Binary, args...)
	out := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sentineltest: start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.cmd, n.done, n.out = cmd, done, out
	addr := n.Addr()
	n.mu.Unlock()
	defer n.mu.Lock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			n.mu.Lock()
			n.cmd = nil
			n.mu.Unlock()
			s := out.String()
			return fmt.Errorf("sentineltest: %s exited at start:\n%s", n.Name, s)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentineltest: %s does not listen", n.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill ends the node at once (SIGKILL) and waits for it to exit.
func (n *Node) Kill() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
}

// Freeze stops the node (SIGSTOP): its sockets stay open, it answers nothing.
func (n *Node) Freeze() error { return n.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen node (SIGCONT).
func (n *Node) Thaw() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(s syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return errors.New("sentineltest: " + n.Name + " is not running")
	}
	return n.cmd.Process.Signal(s)
}

// Restart starts a killed node again on its port and directory, with its
// first configuration (a data node comes back as it started; Sentinel
// turns an old primary into a replica).
func (n *Node) Restart() error {
	n.Kill()
	return n.start()
}

// Log is what the node printed.
func (n *Node) Log() string {
	n.mu.Lock()
	out := n.out
	n.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

func (g *Group) kill() {
	for _, n := range append(append([]*Node{}, g.Data...), g.Sentinels...) {
		n.Thaw()
		n.Kill()
	}
}

func freePorts(k int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("sentineltest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
