package listen

import (
	"sync"
	"sync/atomic"
	"time"
)

// dohWorkers serves the HTTP/2 requests of a DoH listener on long-lived
// goroutines, whose stacks grow once to what the pipeline needs rather
// than for every request. A request goes to an idle worker; when none is
// idle a new one starts, up to max, beyond which the request gets a
// goroutine of its own. A worker idle for idle ends. Safe for concurrent
// use; submit must not be called once close is.
type dohWorkers struct {
	work chan *dohH2Stream // unbuffered: a send succeeds only to an idle worker
	n    atomic.Int32      // workers alive
	max  int32
	idle time.Duration
	stop chan struct{}
	wg   sync.WaitGroup
}

// dohMaxWorkers bounds the workers a DoH listener keeps.
const dohMaxWorkers = 512

func newDoHWorkers(idle time.Duration) *dohWorkers {
	return &dohWorkers{
		work: make(chan *dohH2Stream),
		max:  dohMaxWorkers,
		idle: idle,
		stop: make(chan struct{}),
	}
}

// submit serves s on a worker.
func (p *dohWorkers) submit(s *dohH2Stream) {
	select {
	case p.work <- s:
		return
	default:
	}
	if p.n.Add(1) <= p.max {
		p.wg.Go(func() { p.loop(s) })
		return
	}
	p.n.Add(-1)
	p.wg.Go(s.serve)
}

// loop serves s, then what comes, until idle for p.idle or closed.
func (p *dohWorkers) loop(s *dohH2Stream) {
	defer p.n.Add(-1)
	s.serve()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		select {
		case s := <-p.work:
			s.serve()
			t.Reset(p.idle)
		case <-t.C:
			return
		case <-p.stop:
			return
		}
	}
}

// close ends the idle workers and waits for the busy ones.
func (p *dohWorkers) close() {
	close(p.stop)
	p.wg.Wait()
}
