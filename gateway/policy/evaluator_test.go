package policy

import (
	"sync"
	"testing"
)

func TestEvaluatorPool(t *testing.T) {
	t.Parallel()
	p := newEvaluatorPool(1)

	t.Run("runs the function before returning", func(t *testing.T) {
		ran := false
		p.do(func() { ran = true })
		if !ran {
			t.Fatal("the function did not run")
		}
	})

	t.Run("a panic is raised in the caller", func(t *testing.T) {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want boom", v)
			}
		}()
		for range 3 { // whether an evaluator or the caller runs it
			p.do(func() { panic("boom") })
		}
		t.Fatal("no panic")
	})

	t.Run("the caller evaluates when no evaluator is idle", func(t *testing.T) {
		release := make(chan struct{})
		var busy sync.WaitGroup
		busy.Add(1)
		started := make(chan struct{})
		go p.do(func() {
			close(started)
			<-release
			busy.Done()
		})
		<-started
		// The only evaluator is busy (or the goroutine above evaluates
		// itself): either way this must not wait for release.
		done := false
		p.do(func() { done = true })
		if !done {
			t.Fatal("the function did not run")
		}
		close(release)
		busy.Wait()
	})
}
