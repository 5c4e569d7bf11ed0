package transport

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// udpWait is one query in flight on a socket.
type udpWait struct {
	id   uint16
	q    *dns.Msg
	p    pinnedAddr
	mac  string
	keep bool           // hand the reply's wire form over too
	ch   chan udpResult // one result, then the wait leaves waiting
	bad  error          // why the last datagram with this ID was dropped; under sock.mu

	// The expiry timer of the attempt (see exchange), kept with the wait
	// from one query to the next, re-armed instead of made anew: it is
	// clock's, and ends the wait on sock. sock is set before the timer
	// is armed and read when it fires.
	sock  *udpSock
	clock clockwork.Clock
	timer clockwork.Timer
}

// arm starts w's expiry timer on s: it fires after d on clock. The timer
// of an earlier query is re-armed when it is clock's (the pool hands w
// out only after that timer was stopped before firing, see release).
func (w *udpWait) arm(s *udpSock, clock clockwork.Clock, d time.Duration) {
	w.sock = s
	if w.timer != nil && w.clock == clock {
		w.timer.Reset(d)
		return
	}
	w.clock, w.timer = clock, clock.AfterFunc(d, w.expire)
}

// expire is w's timer function.
func (w *udpWait) expire() { w.sock.expire(w) }

// waits holds udpWaits whose query got its result from the channel, the
// one way a wait is known to be out of every other goroutine's hands:
// deliver, failAll and expire send under sock.mu after taking the wait out
// of waiting, and a socket has one reader. A wait that expired, or whose
// expiry timer may still run, is left to the collector.
var waits = sync.Pool{New: func() any { return &udpWait{ch: make(chan udpResult, 1)} }}

// release returns w, done with and its channel empty, to waits. Its
// timer, when it has one, must have been stopped before it fired.
func (w *udpWait) release() {
	w.reset()
	waits.Put(w)
}

// reset clears w for another query but for its channel and timer.
func (w *udpWait) reset() { *w = udpWait{ch: w.ch, clock: w.clock, timer: w.timer} }

type udpResult struct {
	r       *dns.Msg
	wire    []byte // r as it came, with r's ID; only when the wait keeps it
	err     error
	expired bool // the attempt's deadline passed first (see expire)
}

// register adds a wait for q under a random ID free on s.
func (s *udpSock) register(q *dns.Msg, p pinnedAddr, keep bool) (*udpWait, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, errPoolClosed
	}
	if len(s.waiting) >= 1<<15 {
		return nil, errors.New("too many queries in flight on one socket")
	}
	w := waits.Get().(*udpWait)
	w.q, w.p, w.keep = q, p, keep
	for {
		w.id = uint16(rand.Uint32())
		if _, taken := s.waiting[w.id]; !taken {
			break
		}
	}
	s.waiting[w.id] = w
	return w, nil
}

// done removes w; a retired socket closes with its last query. It
// returns why the last unusable datagram with w's ID was dropped, nil if
// none came.
func (s *udpSock) done(w *udpWait) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[w.id] == w {
		delete(s.waiting, w.id)
	}
	s.closeIfIdle()
	return w.bad
}

// expire ends w, if still in flight, as timed out.
func (s *udpSock) expire(w *udpWait) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[w.id] == w {
		delete(s.waiting, w.id)
		w.ch <- udpResult{expired: true}
	}
}
