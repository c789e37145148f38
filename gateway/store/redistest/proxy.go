package redistest

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
)

// Proxy sits between a client and a server and can lose one exchange: the
// request goes to the server, which runs it, and the answer never comes
// back (CutReply) — or the request never arrives (CutRequest). The client
// sees its connection close, as when a network fails or a server dies
// between a write and its reply.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	rule  *cut
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

type cut struct {
	marker []byte
	reply  bool   // cut the reply (else the request)
	then   func() // after the cut, before the client's connection closes
	hit    chan struct{}
}

// NewProxy forwards connections from a port of its own to target
// (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's address as a redis:// URL, database 0.
func (p *Proxy) URL() string { return fmt.Sprintf("redis://%s/0", p.ln.Addr()) }

// CutReply arranges that the next request whose bytes contain marker
// reaches the server, and that its reply, once the server sends it (so the
// server ran the command and, with appendfsync always, wrote it to disk),
// is dropped: then runs (if not nil; to kill the server, say) and the
// client's connection is closed. The returned channel is closed when that
// happened.
func (p *Proxy) CutReply(marker []byte, then func()) <-chan struct{} {
	return p.arm(&cut{marker: marker, reply: true, then: then, hit: make(chan struct{})})
}

// CutRequest arranges that the next request whose bytes contain marker
// never reaches the server: then runs and the client's connection closes.
func (p *Proxy) CutRequest(marker []byte, then func()) <-chan struct{} {
	return p.arm(&cut{marker: marker, then: then, hit: make(chan struct{})})
}

func (p *Proxy) arm(c *cut) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = c
	return c.hit
}

// take returns the armed rule if buf holds its marker, disarming it.
func (p *Proxy) take(buf []byte) *cut {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rule != nil && bytes.Contains(buf, p.rule.marker) {
		c := p.rule
		p.rule = nil
		return c
	}
	return nil
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client, true)
		p.track(server, true)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pipe(client, server)
			p.track(client, false)
			p.track(server, false)
		}()
	}
}

// pipe forwards both ways until either side closes, watching the requests
// for the armed marker. A request may arrive in several reads: the bytes
// since the last reply are kept for the match.
func (p *Proxy) pipe(client, server net.Conn) {
	var (
		mu      sync.Mutex
		pending *cut // a request cut by its reply, waiting for it
		request []byte
	)
	done := make(chan struct{}, 2)
	finish := func(c *cut) {
		if c.then != nil {
			c.then()
		}
		close(c.hit) // before the client learns of it: whoever waits on hit sees the cut first
		client.Close()
		server.Close()
	}
	go func() { // server -> client
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				mu.Lock()
				c := pending
				request = request[:0]
				mu.Unlock()
				if c != nil {
					finish(c)
					return
				}
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	go func() { // client -> server
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				mu.Lock()
				request = append(request, buf[:n]...)
				c := p.take(request)
				if c != nil && c.reply {
					pending = c
				}
				mu.Unlock()
				if c != nil && !c.reply {
					finish(c)
					return
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				server.Close()
				return
			}
		}
	}()
	<-done
	client.Close()
	server.Close()
	<-done
}
