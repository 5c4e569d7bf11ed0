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

// udpSocket is one socket of a UDP listener and the replies waiting to be
// written on it. Safe for concurrent use.
type udpSocket struct {
	conn *net.UDPConn
	v6   bool
	bc   rawio.Batcher // nil: one datagram per syscall

	mu       sync.Mutex
	pending  []udpReply // under mu; at most cap(pending)
	flushing bool       // under mu: a worker is writing pending out

	// The flusher's, reused from one flush to the next.
	out   []udpReply
	ms    []ipv4.Message
	bufs  [][1][]byte
	addrs []net.UDPAddr
	ips   [][16]byte
}

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
	s.ms = make([]ipv4.Message, n)
	s.bufs = make([][1][]byte, n)
	s.addrs = make([]net.UDPAddr, n)
	s.ips = make([][16]byte, n)
	return s
}

// readBatch is the loop of a socket that reads up to l.batch datagrams
// per syscall, as many as are waiting (asking for as many as the traffic
// suggests, see batch.Size), and hands each to accept like read does; a
// datagram that comes alone costs one recvmmsg (see rawio.ReadLoop).
// Every message of the batch has its own buffer of the largest size,
// kept by the loop; accept gets a copy in a buffer of the datagram's
// size.
func (l *UDP) readBatch(s *udpSocket) {
	ms := make([]ipv4.Message, l.batch)
	bufs := make([]*[]byte, l.batch)
	for i := range ms {
		bufs[i] = getBuf()
		ms[i].Buffers = [][]byte{(*bufs[i])[:dns.MaxMsgSize]}
		if l.pktinfo {
			ms[i].OOB = make([]byte, oobSize)
		}
	}
	defer func() {
		for _, b := range bufs {
			putBuf(b)
		}
	}()
	var backoff time.Duration
	size := batch.Size{Max: len(ms)}
	handle := func(n int) int {
		backoff = 0
		size.Took(n)
		received := time.Now()
		for i := range n {
			m := &ms[i]
			var src netip.AddrPort
			if a, ok := m.Addr.(*net.UDPAddr); ok {
				src = a.AddrPort()
			}
			c := copyBuf((*bufs[i])[:m.N])
			if !l.accept(s, c, m.N, src, m.OOB[:m.NN], received) {
				putBuf(c)
			}
			m.Addr = nil
		}
		if l.isClosed() {
			return 0 // Close's deadline stops a loop only while it waits
		}
		return size.Next()
	}
	for {
		err := rawio.ReadLoop(s.bc, ms, 0, size.Next(), handle)
		if err == nil || l.isClosed() || errors.Is(err, net.ErrClosed) {
			return
		}
		backoff = l.readFailed(err, backoff)
	}
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
		l.flush(s, s.out)
		for i := range s.out {
			l.sent(&s.out[i])
			s.out[i] = udpReply{}
		}
		s.mu.Lock()
	}
	s.flushing = false
	s.mu.Unlock()
}

// flush writes rs with as few sendmmsg calls as it can; only the flusher
// calls it. A reply the kernel refuses is logged and skipped.
func (l *UDP) flush(s *udpSocket, rs []udpReply) {
	used := len(rs)
	ms := s.ms[:used]
	for i := range rs {
		r := &rs[i]
		a := &s.addrs[i]
		ip := s.ips[i][:]
		if r.dst.Addr().Is4() {
			ip4 := r.dst.Addr().As4()
			ip = ip[:copy(ip, ip4[:])]
		} else {
			ip16 := r.dst.Addr().As16()
			copy(ip, ip16[:])
		}
		*a = net.UDPAddr{IP: ip, Port: int(r.dst.Port()), Zone: r.dst.Addr().Zone()}
		s.bufs[i][0] = r.b
		ms[i] = ipv4.Message{Buffers: s.bufs[i][:], Addr: a}
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
	clear(s.ms[:used])
	for i := range s.bufs[:used] {
		s.bufs[i][0] = nil
	}
}

// sent gives back the buffer of a reply that was written and releases
// its query slot.
func (l *UDP) sent(r *udpReply) {
	putBuf(r.buf)
	l.release()
}
