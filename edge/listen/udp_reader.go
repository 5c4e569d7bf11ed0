package listen

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/dnsedge/dnsedge/internal/batch"
	"github.com/dnsedge/dnsedge/internal/rawio"
)

// udpReader is the reading of one socket of a UDP listener that reads
// several datagrams per syscall. It hands each datagram to a worker, or,
// when that costs more than it spares, serves the batch itself.
//
// With more than one P (GOMAXPROCS, which Go sets to at least 2 under a
// container's CPU limit) the scheduler wakes a thread for each hand-off
// to a worker that finds a P idle: at 5,000 cached answers a second that
// was three context switches per query instead of one, and about 1.6
// times the CPU. So while few of the socket's queries wait, the goroutine
// holding the reading serves its batches itself: a cache hit is answered,
// and its reply written with the rest of its batch's, without waking
// another goroutine. With one P a hand-off wakes no thread, and the
// batch is handed to workers from inside the read (see rawio.ReadLoop),
// which saves a system call per wake-up at low rates; so it is, too,
// when many queries wait (forwarded ones), where a batch served in place
// would hand the reading on at its first miss.
//
// A query that is about to wait (for an upstream, for another query's
// answer: it asks its budget for its Done channel, see budget) must not
// hold the reading up. Its budget tells willWait, which writes the
// replies ready, hands the rest of the batch to workers and the reading
// to a worker, which goes on the same way. The goroutine that was reading
// finishes its query, writes its reply like a worker, and stops reading.
// So one goroutine at a time holds the reading; no datagram waits for an
// answer other than its own.
type udpReader struct {
	l       *UDP
	s       *udpSocket
	ms      []ipv4.Message
	bufs    []*[]byte
	size    batch.Size
	backoff time.Duration
	out     []udpReply // the batch's replies, written together
	w       sendBufs

	// Whether batches are served in place, as decided at the end of the
	// last window of inlineWindow queries (see took).
	inl    bool
	served int        // queries admitted in the window so far
	procs  func() int // GOMAXPROCS

	// dispatch and handle, bound once: a method value passed on is
	// allocated each time.
	dispatchFn, handleFn func(int) int

	// The batch being served. The holder changes jobs and next between
	// queries; willWait reads them while a query is served, under mu.
	mu   sync.Mutex
	jobs []udpJob
	next int    // jobs[next:] are not started
	seq  uint64 // the query served now, 0 when none (or handed on)
	last uint64 // the last seq given
}

func newUDPReader(l *UDP, s *udpSocket) *udpReader {
	r := &udpReader{
		l:     l,
		s:     s,
		ms:    make([]ipv4.Message, l.batch),
		bufs:  make([]*[]byte, l.batch),
		size:  batch.Size{Max: l.batch},
		out:   make([]udpReply, 0, l.batch),
		w:     newSendBufs(l.batch),
		jobs:  make([]udpJob, 0, l.batch),
		procs: func() int { return runtime.GOMAXPROCS(0) },
	}
	r.inl = r.choose(0)
	r.dispatchFn, r.handleFn = r.dispatch, r.handle
	for i := range r.ms {
		r.bufs[i] = getBuf()
		r.ms[i].Buffers = [][]byte{(*r.bufs[i])[:dns.MaxMsgSize]}
		if l.pktinfo {
			r.ms[i].OOB = make([]byte, oobSize)
		}
	}
	return r
}

// inlineWindow is how many queries the choice to serve batches in place
// is made over.
const inlineWindow = 64

// took records a read of n datagrams and returns when it was, counts
// them and, at the end of a window, chooses whether the next batches are
// served in place: with more than one P, when fewer than one in four of
// the socket's queries waited.
func (r *udpReader) took(n int) time.Time {
	r.backoff = 0
	r.size.Took(n)
	r.served += n
	if r.served >= inlineWindow {
		r.inl = r.choose(r.s.waited.Swap(0))
		r.served = 0
	}
	return time.Now()
}

// choose is whether to serve batches in place, waited of the window's
// queries having waited.
func (r *udpReader) choose(waited uint64) bool {
	switch r.l.inline {
	case inlineNever:
		return false
	case inlineAlways:
		return true
	}
	return waited*4 < uint64(r.served) && r.procs() > 1
}

// run reads up to l.batch datagrams per syscall, as many as are waiting
// (asking for as many as the traffic suggests, see batch.Size), and hands
// them to workers or serves each batch, until the listener closes or a
// query it serves is about to wait (see willWait): then it returns once
// that query is answered.
func (r *udpReader) run() {
	l := r.l
	for {
		handle := r.dispatchFn
		if r.inl {
			handle = r.handleFn
		}
		err := rawio.ReadLoop(r.s.bc, r.ms, 0, r.size.Next(), handle)
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				r.end()
				return
			}
			r.backoff = l.readFailed(err, r.backoff)
			continue
		}
		if !r.serveBatch() {
			return
		}
		if l.isClosed() {
			// Close's deadline stops a read only while it waits.
			r.end()
			return
		}
	}
}

// dispatch hands the n datagrams read to workers and asks for the next
// batch in the same read, unless batches are to be served in place from
// now on.
func (r *udpReader) dispatch(n int) int {
	received := r.took(n)
	for i := range n {
		if j, ok := r.admit(i, received); ok {
			r.l.workers.submit(j)
		}
	}
	if r.inl || r.l.isClosed() {
		return 0 // Close's deadline stops a read only while it waits
	}
	return r.size.Next()
}

// handle takes the n datagrams read as the batch's jobs and ends the read:
// the batch is served outside it, so that another goroutine can read
// while a query waits.
func (r *udpReader) handle(n int) int {
	received := r.took(n)
	for i := range n {
		if j, ok := r.admit(i, received); ok {
			r.jobs = append(r.jobs, j)
		}
	}
	return 0
}

// admit is UDP.admit of the i-th datagram read, copied into a buffer of
// its size.
func (r *udpReader) admit(i int, received time.Time) (udpJob, bool) {
	m := &r.ms[i]
	var src netip.AddrPort
	if a, ok := m.Addr.(*net.UDPAddr); ok {
		src = a.AddrPort()
	}
	m.Addr = nil
	c := copyBuf((*r.bufs[i])[:m.N])
	j, ok := r.l.admit(r.s, c, m.N, src, m.OOB[:m.NN], received)
	if !ok {
		putBuf(c)
	}
	return j, ok
}

// serveBatch serves the jobs read, in turn, and writes their replies
// together. It returns false when one was about to wait and the reading
// went on elsewhere: that query's reply was written like a worker's.
func (r *udpReader) serveBatch() bool {
	for {
		r.mu.Lock()
		if r.next == len(r.jobs) {
			r.mu.Unlock()
			break
		}
		j := r.jobs[r.next]
		r.jobs[r.next] = udpJob{}
		r.next++
		r.last++
		seq := r.last
		r.seq = seq
		r.mu.Unlock()

		rep, ok := r.l.reply(j, waitHook{w: r, seq: seq})

		r.mu.Lock()
		mine := r.seq == seq
		if mine {
			r.seq = 0
		}
		r.mu.Unlock()
		if !mine {
			if ok {
				r.l.send(j.sock, rep)
			}
			return false
		}
		if ok {
			r.out = append(r.out, rep)
		}
	}
	r.jobs, r.next = r.jobs[:0], 0
	r.flush()
	return true
}

// willWait is the budget's hook of the query seq: when it is the query
// being served on the reading goroutine, the replies ready are written,
// the rest of the batch goes to workers and the reading to another worker.
// The goroutine serving seq does not touch r again (see serveBatch).
func (r *udpReader) willWait(seq uint64) {
	r.mu.Lock()
	if seq == 0 || r.seq != seq {
		r.mu.Unlock()
		return
	}
	r.seq = 0
	rest := r.jobs[r.next:]
	r.mu.Unlock()
	r.s.waited.Add(1)
	r.flush()
	for i, j := range rest {
		r.l.workers.submit(j)
		rest[i] = udpJob{}
	}
	r.jobs, r.next = r.jobs[:0], 0
	r.l.workers.submit(udpJob{reader: r})
}

// flush writes the batch's replies: with one sendmmsg as far as the
// kernel takes them, a v4 client of a v6 socket alone (see send).
func (r *udpReader) flush() {
	l, s := r.l, r.s
	n := 0
	for i := range r.out {
		rep := &r.out[i]
		if s.v6 && rep.dst.Addr().Is4() {
			l.write(s, rep)
			l.sent(rep)
			continue
		}
		r.out[n] = *rep
		n++
	}
	if n > 0 {
		l.flush(s, &r.w, r.out[:n])
		for i := range r.out[:n] {
			l.sent(&r.out[i])
		}
	}
	clear(r.out)
	r.out = r.out[:0]
}

// end gives the read buffers back: the listener is closing.
func (r *udpReader) end() {
	for _, b := range r.bufs {
		putBuf(b)
	}
	r.l.readers.Done()
}
