package redis

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// pipe is one connection on which a sequencer's batches go out in the
// order they are sent and are answered in that order (RESP2 pipelining):
// the server runs a batch sent after another after it, so the second,
// linked to the head the first leaves, finds it. go-redis sends each call
// on a connection of its pool, where two calls made together may run in
// either order.
type pipe struct {
	conn net.Conn
	bw   *bufio.Writer
	br   *bufio.Reader

	mu      sync.Mutex // writes, and pending
	pending []*call
	err     error // set once the connection failed: every call fails
	done    chan struct{}
}

// call is one command on a pipe, answered by the reader.
type call struct {
	reply any
	err   error
	done  chan struct{}
}

// replyError is an error the server answered with (the command did not
// run, or a script stopped before its first write).
type replyError string

func (e replyError) Error() string { return string(e) }

// errNotSent: the connection had failed before the command was written.
var errNotSent = errors.New("redis: not sent")

// dialPipe connects as go-redis would with options o (address, TLS,
// credentials, database) and loads the scripts (sources) it will call.
func dialPipe(ctx context.Context, o *goredis.Options, scripts ...string) (*pipe, error) {
	network := o.Network
	if network == "" {
		network = "tcp"
	}
	timeout := o.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, o.Addr)
	if err != nil {
		return nil, err
	}
	if o.TLSConfig != nil {
		tc := tls.Client(conn, o.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	p := &pipe{conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), br: bufio.NewReaderSize(conn, 64<<10),
		done: make(chan struct{})}
	go p.read()
	user, pass := o.Username, o.Password
	if o.CredentialsProvider != nil {
		user, pass = o.CredentialsProvider()
	}
	var setup [][]any
	switch {
	case pass != "" && user != "":
		setup = append(setup, []any{"AUTH", user, pass})
	case pass != "":
		setup = append(setup, []any{"AUTH", pass})
	}
	if o.DB != 0 {
		setup = append(setup, []any{"SELECT", o.DB})
	}
	for _, src := range scripts {
		setup = append(setup, []any{"SCRIPT", "LOAD", src})
	}
	for _, cmd := range setup {
		if _, err := p.do(ctx, cmd...); err != nil {
			p.close(err)
			return nil, fmt.Errorf("%s: %w", cmd[0], err)
		}
	}
	return p, nil
}

// send writes one command and returns its call, answered by the reader.
func (p *pipe) send(args ...any) *call {
	c := &call{done: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		c.err = fmt.Errorf("%w: %w", errNotSent, p.err)
		close(c.done)
		return c
	}
	p.bw.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		var b []byte
		switch v := a.(type) {
		case string:
			b = []byte(v)
		case []byte:
			b = v
		case int:
			b = strconv.AppendInt(nil, int64(v), 10)
		case int64:
			b = strconv.AppendInt(nil, v, 10)
		case uint64:
			b = strconv.AppendUint(nil, v, 10)
		default:
			b = fmt.Append(nil, v)
		}
		p.bw.WriteString("$" + strconv.Itoa(len(b)) + "\r\n")
		p.bw.Write(b)
		p.bw.WriteString("\r\n")
	}
	p.pending = append(p.pending, c)
	if err := p.bw.Flush(); err != nil {
		p.failLocked(err)
	}
	return c
}

// wait returns the call's reply; when ctx ends first the connection is
// closed (its answer is lost, as every other one pending there).
func (p *pipe) wait(ctx context.Context, c *call) (any, error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		p.close(ctx.Err())
		<-c.done
	}
	return c.reply, c.err
}

func (p *pipe) do(ctx context.Context, args ...any) (any, error) {
	return p.wait(ctx, p.send(args...))
}

// read answers the pending calls in order until the connection fails.
func (p *pipe) read() {
	for {
		v, err := readReply(p.br)
		if err != nil {
			p.close(err)
			return
		}
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.failLocked(errors.New("redis: a reply nobody asked for"))
			p.mu.Unlock()
			return
		}
		c := p.pending[0]
		p.pending = p.pending[1:]
		p.mu.Unlock()
		if re, ok := v.(replyError); ok {
			c.err = re
		} else {
			c.reply = v
		}
		close(c.done)
	}
}

func (p *pipe) close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLocked(err)
}

func (p *pipe) failLocked(err error) {
	if p.err != nil {
		return
	}
	p.err = fmt.Errorf("redis: connection lost: %w", err)
	p.conn.Close()
	for _, c := range p.pending {
		c.err = p.err
		close(c.done)
	}
	p.pending = nil
	close(p.done)
}

func (p *pipe) broken() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// readReply reads one RESP2 reply: a string, an int64, nil, a replyError,
// or a []any of those.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, errors.New("redis: malformed reply")
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return replyError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, errors.New("redis: malformed bulk length")
		}
		if n == -1 {
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, errors.New("redis: malformed array length")
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
			if re, ok := out[i].(replyError); ok {
				out[i] = error(re)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redis: unknown reply type %q", line[0])
}
