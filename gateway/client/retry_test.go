package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/xborder/xborder/gateway/client"
)

// gatewayStub answers each POST with the next status of answers (the last
// one from then on) and keeps the bodies it got.
type gatewayStub struct {
	mu      sync.Mutex
	answers []int
	bodies  [][]byte
}

func (g *gatewayStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.bodies = append(g.bodies, b)
	status := g.answers[min(len(g.bodies), len(g.answers))-1]
	g.mu.Unlock()
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		w.Write([]byte(`{"code":"unavailable","detail":"outcome_unknown"}`))
		return
	}
	w.WriteHeader(status)
}

func TestPostRetry(t *testing.T) {
	tests := []struct {
		name    string
		answers []int
		want    int
		posts   int
	}{
		{"503 then 202", []int{503, 503, 202}, 202, 3},
		{"503 then 200 (it had been accepted)", []int{503, 200}, 200, 2},
		{"a refusal is not retried", []int{403}, 403, 1},
		{"422 is not retried", []int{422}, 422, 1},
		{"503 until the attempts are spent", []int{503}, 503, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stub := &gatewayStub{answers: tc.answers}
			srv := httptest.NewServer(stub)
			defer srv.Close()
			c := &client.Client{Base: srv.URL, HTTP: srv.Client()}
			sealed := []byte("eyJ.the.same.signed.bytes")
			retries := 0
			r, err := c.PostRetry(context.Background(), sealed, client.Retry{Attempts: 3, Backoff: time.Millisecond,
				OnRetry: func(int, *client.Response, error, time.Duration) { retries++ }})
			if err != nil || r.Status != tc.want {
				t.Fatalf("PostRetry: %v %v, want %d", err, r, tc.want)
			}
			if len(stub.bodies) != tc.posts || retries != tc.posts-1 {
				t.Fatalf("%d posts, %d retries; want %d posts", len(stub.bodies), retries, tc.posts)
			}
			for i, b := range stub.bodies {
				if !bytes.Equal(b, sealed) {
					t.Errorf("post %d sent other bytes: %q", i, b)
				}
			}
		})
	}
}

// A connection that fails is retried with the same bytes too.
func TestPostRetryConnectionFails(t *testing.T) {
	srv := httptest.NewServer(&gatewayStub{answers: []int{202}})
	url := srv.URL
	srv.Close()
	c := &client.Client{Base: url, HTTP: &http.Client{Timeout: time.Second}}
	n := 0
	_, err := c.PostRetry(context.Background(), []byte("x"), client.Retry{Attempts: 2, Backoff: time.Millisecond,
		OnRetry: func(_ int, r *client.Response, err error, _ time.Duration) {
			if r != nil || err == nil {
				t.Errorf("retry after %v %v", r, err)
			}
			n++
		}})
	if err == nil || n != 1 {
		t.Fatalf("err %v after %d retries", err, n)
	}
}
