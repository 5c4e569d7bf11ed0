package listen

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestWorkers: every job is served; workers an idle period did not need
// end when it is over, the others stay; max bounds the workers, the
// jobs beyond it still served; closing stop ends them all.
func TestWorkers(t *testing.T) {
	t.Parallel()
	t.Run("serves all", func(t *testing.T) {
		t.Parallel()
		stop := make(chan struct{})
		var served atomic.Int64
		w := newWorkers(func(int) { served.Add(1) }, time.Hour, 0, stop)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for i := range 1000 {
					w.submit(i)
				}
			})
		}
		wg.Wait()
		waitFor(t, "4000 jobs served", func() bool { return served.Load() == 4000 })
		close(stop)
		w.wait()
		if n := w.n.Load(); n != 0 {
			t.Errorf("%d workers left after wait", n)
		}
	})
	t.Run("retire", func(t *testing.T) {
		t.Parallel()
		stop := make(chan struct{})
		release := make(chan struct{})
		var served atomic.Int32
		w := newWorkers(func(block bool) {
			if block {
				<-release
			}
			served.Add(1)
		}, time.Hour, 0, stop)
		for range 5 {
			w.submit(true)
		}
		waitFor(t, "5 busy workers", func() bool { return w.busy.Load() == 5 })
		close(release)
		waitFor(t, "5 idle workers", func() bool { return w.busy.Load() == 0 })
		w.retireIdle() // all 5 were needed in this period
		if n := w.n.Load(); n != 5 {
			t.Fatalf("%d workers after a busy period, want 5", n)
		}
		w.submit(false) // one needed in the next
		waitFor(t, "the job served", func() bool { return served.Load() == 6 })
		w.retireIdle()
		waitFor(t, "the 4 workers not needed to end", func() bool { return w.n.Load() == 1 })
		w.retireIdle()
		waitFor(t, "the last worker to end", func() bool { return w.n.Load() == 0 })
		done := make(chan struct{})
		w.submit(false) // a new worker starts
		go func() { w.submit(false); close(done) }()
		<-done
		close(stop)
		w.wait()
	})
	t.Run("last idle first", func(t *testing.T) {
		t.Parallel()
		stop := make(chan struct{})
		var release [3]chan struct{}
		for i := range release {
			release[i] = make(chan struct{})
		}
		w := newWorkers(func(i int) {
			if i >= 0 {
				<-release[i]
			}
		}, time.Hour, 0, stop)
		for i := range release {
			w.submit(i)
		}
		waitFor(t, "3 busy workers", func() bool { return w.busy.Load() == 3 })
		idle := func() []*worker[int] {
			w.mu.Lock()
			defer w.mu.Unlock()
			return append([]*worker[int](nil), w.idle...)
		}
		for i := range release {
			close(release[i])
			waitFor(t, "the worker to be idle", func() bool { return len(idle()) == i+1 })
		}
		before := idle()
		w.submit(-1)
		waitFor(t, "the job taken", func() bool { return len(idle()) == 3 && w.busy.Load() == 0 })
		// The job went to the worker idle the shortest time, which is
		// back on top; the other two keep their order below it.
		if after := idle(); after[0] != before[0] || after[1] != before[1] || after[2] != before[2] {
			t.Errorf("the job did not go to the worker idle the shortest time: idle %v, before it %v", after, before)
		}
		w.retireIdle() // 3 were busy at once in this period: none ends
		w.submit(-1)   // 1 in the next
		waitFor(t, "the job served", func() bool { return len(idle()) == 3 && w.busy.Load() == 0 })
		w.retireIdle() // the 2 idle the longest end
		waitFor(t, "2 workers to end", func() bool { return w.n.Load() == 1 })
		if after := idle(); len(after) != 1 || after[0] != before[2] {
			t.Errorf("idle after retiring 2: %v, want only the one idle the shortest time, %v", after, before[2])
		}
		close(stop)
		w.wait()
	})
	t.Run("max", func(t *testing.T) {
		t.Parallel()
		stop := make(chan struct{})
		release := make(chan struct{})
		var running atomic.Int32
		w := newWorkers(func(int) {
			running.Add(1)
			<-release
		}, time.Hour, 2, stop)
		for i := range 4 {
			w.submit(i)
		}
		waitFor(t, "4 jobs running", func() bool { return running.Load() == 4 })
		if n := w.n.Load(); n != 2 {
			t.Errorf("%d workers, want the max of 2", n)
		}
		close(release)
		close(stop)
		w.wait()
	})
	t.Run("stop", func(t *testing.T) {
		t.Parallel()
		stop := make(chan struct{})
		release := make(chan struct{})
		w := newWorkers(func(block bool) {
			if block {
				<-release
			}
		}, time.Hour, 0, stop)
		for range 3 {
			w.submit(true)
		}
		w.submit(false)
		waitFor(t, "3 busy workers", func() bool { return w.busy.Load() == 3 })
		close(stop) // one idle worker, three busy
		go func() {
			time.Sleep(10 * time.Millisecond)
			close(release)
		}()
		done := make(chan struct{})
		go func() { w.wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("wait did not return; %d workers alive", w.n.Load())
		}
	})
}

// TestWorkersIdleNoAlloc: a job handed to an idle worker is copied into
// its channel, not moved to the heap (a udpJob is 136 bytes, and every
// UDP query the reader hands on is one).
func TestWorkersIdleNoAlloc(t *testing.T) {
	done := make(chan struct{})
	stop := make(chan struct{})
	w := newWorkers(func(udpJob) { done <- struct{}{} }, time.Hour, 0, stop)
	idle := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.idle) == 1
	}
	j := udpJob{n: 1}
	w.submit(j) // the worker, and its place in the idle list
	<-done
	waitFor(t, "the worker idle", idle)
	allocs := testing.AllocsPerRun(200, func() {
		w.submit(j)
		<-done
		for !idle() {
			runtime.Gosched()
		}
	})
	if allocs != 0 {
		t.Errorf("a job handed to an idle worker allocates %v times, want 0", allocs)
	}
	close(stop)
	w.wait()
}
