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
// goroutine of its own. A worker that served nothing for idle ends (see
// loop), as do idle workers once stop is closed. Safe for concurrent use;
// submit must not be called after wait.
type workers[J any] struct {
	jobs  chan J // unbuffered: a send succeeds only to an idle worker
	serve func(J)
	idle  time.Duration
	max   int32
	n     atomic.Int32 // workers alive
	stop  <-chan struct{}
	wg    sync.WaitGroup
}

func newWorkers[J any](serve func(J), idle time.Duration, max int, stop <-chan struct{}) *workers[J] {
	return &workers[J]{jobs: make(chan J), serve: serve, idle: idle, max: int32(max), stop: stop}
}

// submit serves j on a worker.
func (w *workers[J]) submit(j J) {
	select {
	case w.jobs <- j:
		return
	default:
	}
	if w.max == 0 || w.n.Add(1) <= w.max {
		if w.max == 0 {
			w.n.Add(1)
		}
		w.wg.Go(func() { w.loop(j) })
		return
	}
	w.n.Add(-1)
	w.wg.Go(func() { w.serve(j) })
}

// loop serves j, then the jobs handed to it while it waits, until it has
// served none for a whole w.idle (so it ends after idling between w.idle
// and twice that) or stop is closed. The timer is not reset per job,
// which would cost a timer-heap update for every query.
func (w *workers[J]) loop(j J) {
	defer w.n.Add(-1)
	w.serve(j)
	t := time.NewTimer(w.idle)
	defer t.Stop()
	busy := false
	for {
		select {
		case j := <-w.jobs:
			w.serve(j)
			busy = true
		case <-t.C:
			if !busy {
				return
			}
			busy = false
			t.Reset(w.idle)
		case <-w.stop:
			return
		}
	}
}

// wait waits for every worker to end; stop must be closed first.
func (w *workers[J]) wait() { w.wg.Wait() }
