package listen

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a worker waits for another job before it ends.
const workerIdle = 5 * time.Second

// workers serves the jobs of a listener on long-lived goroutines. Reusing
// goroutines costs less CPU than a goroutine per query: their stacks grow
// once to what the pipeline needs instead of for every query, and there is
// one allocation fewer (BenchmarkUDPServe). A job goes to an idle worker;
// when none is idle a new one starts, up to max (0: no bound, the
// listener's query slots bound them), beyond which the job gets a
// goroutine of its own. Workers the last idle period never needed end (see
// retire), as do idle workers once stop is closed. Safe for concurrent
// use; submit must not be called after wait.
//
// The idle worker a job goes to is the one that became idle last. Under
// load a listener has as many workers as queries in flight (hundreds for a
// client that pipelines over TCP); a channel wakes its receivers in the
// order they came, which hands every job to the worker idle the longest,
// whose stack has left the CPU's caches by then, and a query's first
// touches of its stack frames then cost more than the stages that run in
// them. Taking the last one keeps the few stacks the load needs warm.
//
// An idle worker waits on its own channel alone: a select over it, a timer
// and stop cost a query about a thousand instructions more (locking three
// channels and queueing on each), so the timer and stop are the retiring
// goroutine's business, which hands idle workers a quit job.
type workers[J any] struct {
	mu    sync.Mutex
	idle  []*worker[J] // the idle workers, the one idle the shortest time last
	serve func(J)
	every time.Duration // the retiring goroutine's period
	max   int32
	n     atomic.Int32 // workers alive
	busy  atomic.Int32 // workers serving a job
	peak  atomic.Int32 // most workers busy at once since the last tick
	stop  <-chan struct{}
	start sync.Once // the retiring goroutine, with the first worker
	wg    sync.WaitGroup
}

// worker is an idle worker's channel: of capacity one, so that the job
// handed to it is never waited on.
type worker[J any] struct{ jobs chan job[J] }

// job is a job for a worker, or the order to end (quit).
type job[J any] struct {
	j    J
	quit bool
}

func newWorkers[J any](serve func(J), idle time.Duration, max int, stop <-chan struct{}) *workers[J] {
	return &workers[J]{serve: serve, every: idle, max: int32(max), stop: stop}
}

// submit serves j on a worker.
func (w *workers[J]) submit(j J) {
	if wk := w.take(false); wk != nil {
		wk.jobs <- job[J]{j: j}
		return
	}
	w.spawn(j)
}

// spawn serves j on a new goroutine: a new worker, or a goroutine of its
// own when max workers are alive. It is apart from submit so that only a
// job that starts a goroutine is moved to the heap (the closures capture
// it), not every job handed to an idle worker.
//
//go:noinline
func (w *workers[J]) spawn(j J) {
	if w.max == 0 || w.n.Add(1) <= w.max {
		if w.max == 0 {
			w.n.Add(1)
		}
		w.start.Do(func() { w.wg.Go(w.retire) })
		w.wg.Go(func() { w.loop(j) })
		return
	}
	w.n.Add(-1)
	w.wg.Go(func() { w.serve(j) })
}

// take removes an idle worker from the list and returns it, nil when none
// is idle: the one idle the shortest time, or with oldest the longest.
func (w *workers[J]) take(oldest bool) *worker[J] {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := len(w.idle) - 1
	if k < 0 {
		return nil
	}
	var wk *worker[J]
	if oldest {
		wk = w.idle[0]
		copy(w.idle, w.idle[1:])
	} else {
		wk = w.idle[k]
	}
	w.idle[k] = nil
	w.idle = w.idle[:k]
	return wk
}

// loop serves j, then the jobs handed to it, until it gets a quit job or
// finds stop closed after a job.
func (w *workers[J]) loop(j J) {
	defer w.n.Add(-1)
	wk := &worker[J]{jobs: make(chan job[J], 1)}
	for {
		w.run(j)
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		w.idle = append(w.idle, wk)
		w.mu.Unlock()
		next := <-wk.jobs
		if next.quit {
			return
		}
		j = next.j
	}
}

// run serves j, counted as busy.
func (w *workers[J]) run(j J) {
	b := w.busy.Add(1)
	for p := w.peak.Load(); b > p && !w.peak.CompareAndSwap(p, b); p = w.peak.Load() {
	}
	w.serve(j)
	w.busy.Add(-1)
}

// retire ends, every idle period, the workers the period did not need
// (see retireIdle). Once stop is closed it ends every worker, as each
// becomes idle.
func (w *workers[J]) retire() {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.retireIdle()
		case <-w.stop:
			// The rest may be busy, and end on their own: look again
			// every 10 ms.
			again := time.NewTicker(10 * time.Millisecond)
			defer again.Stop()
			for w.n.Load() > 0 {
				if wk := w.take(true); wk != nil {
					wk.jobs <- job[J]{quit: true}
					continue
				}
				<-again.C
			}
			return
		}
	}
}

// retireIdle ends as many idle workers as were alive beyond the most that
// were busy at once since it last ran, those idle the longest first.
func (w *workers[J]) retireIdle() {
	for surplus := w.n.Load() - w.peak.Swap(w.busy.Load()); surplus > 0; surplus-- {
		wk := w.take(true)
		if wk == nil {
			return
		}
		wk.jobs <- job[J]{quit: true}
	}
}

// wait waits for every worker to end; stop must be closed first.
func (w *workers[J]) wait() { w.wg.Wait() }
