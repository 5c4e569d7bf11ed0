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
// An idle worker waits on the jobs channel alone: a select over it, a
// timer and stop cost a query about a thousand instructions more (locking
// three channels and queueing on each), so the timer and stop are the
// retiring goroutine's business, which hands idle workers a quit job.
type workers[J any] struct {
	jobs  chan job[J] // unbuffered: a send succeeds only to an idle worker
	serve func(J)
	idle  time.Duration
	max   int32
	n     atomic.Int32 // workers alive
	busy  atomic.Int32 // workers serving a job
	peak  atomic.Int32 // most workers busy at once since the last tick
	stop  <-chan struct{}
	start sync.Once // the retiring goroutine, with the first worker
	wg    sync.WaitGroup
}

// job is a job for a worker, or the order to end (quit).
type job[J any] struct {
	j    J
	quit bool
}

func newWorkers[J any](serve func(J), idle time.Duration, max int, stop <-chan struct{}) *workers[J] {
	return &workers[J]{jobs: make(chan job[J]), serve: serve, idle: idle, max: int32(max), stop: stop}
}

// submit serves j on a worker.
func (w *workers[J]) submit(j J) {
	select {
	case w.jobs <- job[J]{j: j}:
		return
	default:
	}
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

// loop serves j, then the jobs handed to it, until it gets a quit job or
// finds stop closed after a job.
func (w *workers[J]) loop(j J) {
	defer w.n.Add(-1)
	for {
		w.run(j)
		select {
		case <-w.stop:
			return
		default:
		}
		next := <-w.jobs
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
	t := time.NewTicker(w.idle)
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
			quit := job[J]{quit: true}
			for w.n.Load() > 0 {
				select {
				case w.jobs <- quit:
				case <-again.C:
				}
			}
			return
		}
	}
}

// retireIdle ends as many idle workers as were alive beyond the most that
// were busy at once since it last ran.
func (w *workers[J]) retireIdle() {
	for surplus := w.n.Load() - w.peak.Swap(w.busy.Load()); surplus > 0; surplus-- {
		select {
		case w.jobs <- job[J]{quit: true}: // only an idle worker takes it
		default:
			return
		}
	}
}

// wait waits for every worker to end; stop must be closed first.
func (w *workers[J]) wait() { w.wg.Wait() }
