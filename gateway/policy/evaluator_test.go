package policy

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

func TestEvaluatorPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("runs the function before returning", func(t *testing.T) {
		p := newEvaluatorPool(1)
		ran := false
		if err := p.do(ctx, time.Minute, func() { ran = true }); err != nil || !ran {
			t.Fatalf("ran %v, err %v", ran, err)
		}
	})

	t.Run("a panic is raised in the caller", func(t *testing.T) {
		p := newEvaluatorPool(1)
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want boom", v)
			}
		}()
		_ = p.do(ctx, time.Minute, func() { panic("boom") })
		t.Fatal("no panic")
	})

	t.Run("the evaluator survives a panic", func(t *testing.T) {
		p := newEvaluatorPool(1)
		func() {
			defer func() { _ = recover() }()
			_ = p.do(ctx, time.Minute, func() { panic("boom") })
		}()
		ran := false
		if err := p.do(ctx, time.Minute, func() { ran = true }); err != nil || !ran {
			t.Fatalf("after a panic: ran %v, err %v", ran, err)
		}
	})

	t.Run("a decision waits for a free evaluator, not in the caller", func(t *testing.T) {
		p := newEvaluatorPool(1)
		release := make(chan struct{})
		started := make(chan struct{})
		first := make(chan error)
		go func() { first <- p.do(ctx, time.Minute, func() { close(started); <-release }) }()
		<-started
		// The only evaluator is busy: the second decision must not run
		// until the first is done, and then it runs.
		ran := make(chan struct{})
		second := make(chan error)
		go func() { second <- p.do(ctx, time.Minute, func() { close(ran) }) }()
		select {
		case <-ran:
			t.Fatal("a decision ran while the only evaluator was busy")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		<-ran
	})

	t.Run("a decision whose context ends while it waits does not run", func(t *testing.T) {
		p := newEvaluatorPool(1)
		release := make(chan struct{})
		defer close(release)
		started := make(chan struct{})
		go func() { _ = p.do(ctx, time.Minute, func() { close(started); <-release }) }()
		<-started
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(10 * time.Millisecond); cancel() }()
		ran := false
		err := p.do(cctx, time.Minute, func() { ran = true })
		if !errors.Is(err, context.Canceled) || ran {
			t.Fatalf("ran %v, err %v; want not run, context.Canceled", ran, err)
		}
	})
}

// The deadline of a decision bounds its evaluation, not its wait for an
// evaluator: a burst queues rather than turning into denials.
func TestDeadlineStartsWhenEvaluationStarts(t *testing.T) {
	t.Parallel()
	const allow = "package xborder\n\ndecision := {\"allow\": true, \"reasons\": [], \"redact\": [], \"obligations\": {\"retention_days\": 1, \"review\": false}}\n"
	ctx := context.Background()
	const timeout = time.Second
	b, err := Compile(ctx, fstest.MapFS{"allow.rego": {Data: []byte(allow)}}, Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	// Every evaluator busy for longer than the deadline.
	p := evaluators()
	release := make(chan struct{})
	var busy sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		started := make(chan struct{})
		busy.Go(func() { _ = p.do(ctx, time.Minute, func() { close(started); <-release }) })
		<-started
	}
	done := make(chan error, 1)
	var d Decision
	go func() {
		var err error
		d, err = b.Decide(ctx, Input{Now: "2026-12-01T00:00:00Z", Message: map[string]any{}})
		done <- err
	}()
	time.Sleep(timeout + timeout/2)
	close(release)
	busy.Wait()
	if err := <-done; err != nil || !d.Allow {
		t.Fatalf("after waiting %v for an evaluator: %+v, %v; want allowed", timeout+timeout/2, d, err)
	}
}

// An evaluation that outlives its limit (stuck in a built-in) is given up
// by its caller with ErrStuck; another evaluator takes its place, so the
// pool keeps its size; when the stuck one ends, it leaves.
func TestEvaluatorPoolReplacesAStuckEvaluator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newEvaluatorPool(2)
	release := make(chan struct{})
	if err := p.do(ctx, 50*time.Millisecond, func() { <-release }); !errors.Is(err, ErrStuck) {
		t.Fatalf("err = %v, want ErrStuck", err)
	}
	if s, st := p.serving.Load(), p.stuck.Load(); s != 2 || st != 1 {
		t.Fatalf("serving %d, stuck %d", s, st)
	}
	// Two decisions at once still find two evaluators.
	var both sync.WaitGroup
	met := make(chan struct{})
	var once sync.Once
	var n sync.WaitGroup
	n.Add(2)
	for range 2 {
		both.Go(func() {
			_ = p.do(ctx, time.Minute, func() {
				n.Done()
				n.Wait() // returns only when both run at the same time
				once.Do(func() { close(met) })
			})
		})
	}
	both.Wait()
	<-met
	close(release)
	for p.stuck.Load() != 0 {
		runtime.Gosched()
	}
	if s := p.serving.Load(); s != 2 {
		t.Fatalf("serving %d after the stuck one ended", s)
	}
}
