package listen

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"

	"github.com/dnsedge/dnsedge/internal/rawio"
)

// udpSocket is one socket of a UDP listener and the replies waiting to be
// written on it. Safe for concurrent use.
type udpSocket struct {
	conn *net.UDPConn
	v6   bool
	bc   rawio.Batcher // nil: one datagram per syscall

	// waited counts the queries served on workers, or handed on by the
	// reading goroutine, that were about to wait (see udpReader.took).
	waited atomic.Uint64

	mu       sync.Mutex
	pending  []udpReply // under mu; at most cap(pending)
	flushing bool       // under mu: a worker is writing pending out

	// The flusher's, reused from one flush to the next.
	out []udpReply
	w   sendBufs
}

// sendBufs are the arrays one sendmmsg of replies is built in, kept from
// one call to the next by their one user at a time.
type sendBufs struct {
	ms    []ipv4.Message
	bufs  [][1][]byte
	addrs []net.UDPAddr
	ips   [][16]byte
}

func newSendBufs(n int) sendBufs {
	return sendBufs{
		ms:    make([]ipv4.Message, n),
		bufs:  make([][1][]byte, n),
		addrs: make([]net.UDPAddr, n),
		ips:   make([][16]byte, n),
	}
}

// willWait counts a query served on a worker that is about to wait.
func (s *udpSocket) willWait(uint64) { s.waited.Add(1) }

// udpReply is a reply to write: b, in the pooled buffer buf, to dst, from
// the address from (and interface ifindex) the query was sent to.
type udpReply struct {
	b       []byte
	buf     *[]byte
	dst     netip.AddrPort
	from    netip.Addr
	ifindex uint32
}

// writeBatches is how many read batches' worth of replies one sendmmsg
// takes at most.
const writeBatches = 4

func newUDPSocket(c *net.UDPConn, v6 bool, batch int) *udpSocket {
	s := &udpSocket{conn: c, v6: v6}
	if batch <= 1 {
		return s
	}
	bc, err := rawio.NewBatcher(c, v6)
	if err != nil {
		return s // one datagram per syscall then
	}
	s.bc = bc
	// Replies finish in bursts larger than a read batch when many
	// queries wait.
	n := writeBatches * batch
	s.pending = make([]udpReply, 0, n)
	s.out = make([]udpReply, 0, n)
	s.w = newSendBufs(n)
	return s
}

// send writes r, gives its buffer back and releases its query slot.
//
// Replies that are ready together leave together, as on TCP (see
// TCP.write): the first worker with a reply becomes the flusher, yields
// once so that the other workers that can run finish and append their
// replies, then writes everything pending with one sendmmsg, until nothing
// is pending. No reply waits for one that is not ready. When the batch is
// full, or the socket writes one datagram per syscall, the worker writes
// its reply itself.
func (l *UDP) send(s *udpSocket, r udpReply) {
	if s.bc == nil || s.v6 && r.dst.Addr().Is4() {
		// The batch writer would address a v4 client of a v6 socket
		// with an AF_INET sockaddr; net maps it.
		l.write(s, &r)
		l.sent(&r)
		return
	}
	s.mu.Lock()
	if len(s.pending) == cap(s.pending) {
		s.mu.Unlock()
		l.write(s, &r)
		l.sent(&r)
		return
	}
	s.pending = append(s.pending, r)
	if s.flushing {
		s.mu.Unlock()
		return
	}
	s.flushing = true
	s.mu.Unlock()
	runtime.Gosched()
	s.mu.Lock()
	for len(s.pending) > 0 {
		s.out, s.pending = s.pending, s.out[:0]
		s.mu.Unlock()
		l.flush(s, &s.w, s.out)
		for i := range s.out {
			l.sent(&s.out[i])
			s.out[i] = udpReply{}
		}
		s.mu.Lock()
	}
	s.flushing = false
	s.mu.Unlock()
}

// flush writes rs with as few sendmmsg calls as it can, building them in
// w, which holds at least len(rs) messages. A reply the kernel refuses is
// logged and skipped.
func (l *UDP) flush(s *udpSocket, w *sendBufs, rs []udpReply) {
	used := len(rs)
	ms := w.ms[:used]
	for i := range rs {
		r := &rs[i]
		a := &w.addrs[i]
		ip := w.ips[i][:]
		if r.dst.Addr().Is4() {
			ip4 := r.dst.Addr().As4()
			ip = ip[:copy(ip, ip4[:])]
		} else {
			ip16 := r.dst.Addr().As16()
			copy(ip, ip16[:])
		}
		*a = net.UDPAddr{IP: ip, Port: int(r.dst.Port()), Zone: r.dst.Addr().Zone()}
		w.bufs[i][0] = r.b
		ms[i] = ipv4.Message{Buffers: w.bufs[i][:], Addr: a}
		if l.pktinfo {
			ms[i].OOB = l.oobFor(r.from, r.ifindex)
		}
	}
	for len(ms) > 0 {
		n, err := s.bc.WriteBatch(ms, 0)
		if err != nil {
			// The first message failed; the ones before it were sent.
			n = max(n, 0)
			l.log.Debug("write udp reply", "client", rs[n].dst.String(), "err", err)
			n++
		}
		ms, rs = ms[n:], rs[n:]
	}
	// Drop the references to the replies written, and only those: the
	// arrays are sized for the largest burst.
	clear(w.ms[:used])
	for i := range w.bufs[:used] {
		w.bufs[i][0] = nil
	}
}

// sent gives back the buffer of a reply that was written and releases
// its query slot.
func (l *UDP) sent(r *udpReply) {
	putBuf(r.buf)
	l.release()
}
