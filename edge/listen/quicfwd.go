package listen

import (
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

// QUICRouting is what the QUIC listeners of one process share for binary
// upgrades: the connection IDs they issue (marked as this process's),
// and the forwarding of packets to the new process while this one still
// reads the QUIC sockets. Each QUIC socket handed over comes with a
// SOCK_SEQPACKET socketpair (IsQUICPair); once the new process serves
// (Start), this process sends on it the packets that open connections
// and those of the new process's connections, each as the client's
// address and the packet. The new
// process reads them as if from the socket, and writes its replies on
// the socket itself, so clients see one server address. It reads the
// socket only when this process has let go of it.
//
// The queue of a pair is the kernel's socket buffer: a packet that does
// not fit is dropped (QUIC retransmits it) and counted. A nil
// *QUICRouting issues random connection IDs and forwards nothing.
type QUICRouting struct {
	gen       *cidGen
	log       *slog.Logger
	forwarded prometheus.Counter
	dropped   prometheus.Counter

	// Counts of the forwarding under way, for the log line that ends it:
	// the metrics endpoint of the old process is closed by then.
	nForwarded, nDropped atomic.Int64

	mu     sync.Mutex
	socks  map[*quicSock]struct{}
	warned bool // a drop was logged since Start
	active bool // between Start and Stop
}

// NewQUICRouting returns the routing of a process whose connection IDs
// start with marker (0 for a process started afresh, the old process's
// plus one after an upgrade), with its metrics registered in reg.
func NewQUICRouting(marker byte, reg prometheus.Registerer, log *slog.Logger) *QUICRouting {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &QUICRouting{
		gen: newCIDGen(marker),
		log: log,
		forwarded: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsedge_upgrade_quic_forwarded_total",
			Help: "QUIC packets this process forwarded to the process that replaces it.",
		})),
		dropped: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsedge_upgrade_quic_forward_dropped_total",
			Help: "QUIC packets not forwarded to the process that replaces it: its queue was full or it was gone.",
		})),
		socks: make(map[*quicSock]struct{}),
	}
}

// Marker returns the first byte of this process's connection IDs.
func (r *QUICRouting) Marker() byte { return r.gen.marker }

// Next returns the marker of the process that replaces this one.
func (r *QUICRouting) Next() byte { return r.gen.marker + 1 }

// Start forwards, on every socket handed over since the last Start or
// Stop, what belongs to the new process.
func (r *QUICRouting) Start() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warned, r.active = false, true
	r.nForwarded.Store(0)
	r.nDropped.Store(0)
	for s := range r.socks {
		s.mu.Lock()
		if s.pending != nil {
			s.out.Store(&fwdOut{r: r, c: s.pending, next: r.Next()})
			s.pending = nil
		}
		s.mu.Unlock()
	}
}

// Stop ends every forwarding: the new process is gone (this one serves
// again) or this one is closing.
func (r *QUICRouting) Stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.socks {
		s.stopForwarding()
	}
	if r.active {
		r.active = false
		r.log.Info("upgrade: QUIC forwarding to the new process ended",
			"forwarded", r.nForwarded.Load(), "dropped", r.nDropped.Load())
	}
}

// Forwarding reports whether this process forwards to a new process:
// between Start and Stop.
func (r *QUICRouting) Forwarding() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

func (r *QUICRouting) add(s *quicSock) {
	r.mu.Lock()
	r.socks[s] = struct{}{}
	r.mu.Unlock()
}

func (r *QUICRouting) forget(s *quicSock) {
	r.mu.Lock()
	delete(r.socks, s)
	r.mu.Unlock()
}

func (r *QUICRouting) drop(err error) {
	r.dropped.Inc()
	r.nDropped.Add(1)
	r.mu.Lock()
	first := !r.warned
	r.warned = true
	r.mu.Unlock()
	if first {
		r.log.Warn("upgrade: a QUIC packet for the new process was dropped (see dnsedge_upgrade_quic_forward_dropped_total)", "error", err.Error())
	}
}

// fwdPacket is a packet the old process forwarded.
type fwdPacket struct {
	addr *net.UDPAddr
	b    []byte
}

// fwdQueue bounds the forwarded packets read from the pair and not yet
// taken by quic-go; beyond, they wait in the pair, then the old process
// drops them.
const fwdQueue = 256

// quicSock is the net.PacketConn a QUIC transport reads. On an inherited
// socket it reads, until gate is closed (the old process has let go of
// the socket), only the packets the old process forwards (in), and the
// socket itself from then on. When this process hands its sockets over,
// it forwards what belongs to the new process (out). Writes always go to
// the socket.
type quicSock struct {
	c      *net.UDPConn
	batch  *ipv4.PacketConn // c, read in batches
	r      *QUICRouting     // nil: no forwarding out
	gate   <-chan struct{}  // nil: the socket is this process's
	in     chan fwdPacket   // nil: nothing forwarded in; closed at the pair's end
	closed chan struct{}
	kick   chan struct{} // capacity 1: a read deadline was set
	dl     atomic.Int64  // read deadline, UnixNano; 0: none
	once   sync.Once

	gateOpen atomic.Bool
	inDone   atomic.Bool

	mu      sync.Mutex
	pending *net.UnixConn // our end of the pair handed over, until Start
	out     atomic.Pointer[fwdOut]
}

var _ quic.OOBCapablePacketConn = (*quicSock)(nil)

// newQUICSock wraps c; in, when not nil, is the pair the old process
// forwards on, read until its end.
func newQUICSock(c *net.UDPConn, r *QUICRouting, gate <-chan struct{}, in *net.UnixConn) *quicSock {
	s := &quicSock{c: c, batch: ipv4.NewPacketConn(c), r: r, gate: gate, closed: make(chan struct{}), kick: make(chan struct{}, 1)}
	if in != nil {
		s.in = make(chan fwdPacket, fwdQueue)
		go s.readPair(in)
	}
	if r != nil {
		r.add(s)
	}
	return s
}

// readPair queues the packets forwarded on in until the old process
// closes its end (it has exited) or s is closed.
func (s *quicSock) readPair(in *net.UnixConn) {
	defer close(s.in)
	go func() { <-s.closed; in.Close() }()
	buf := make([]byte, 1<<16+32)
	for {
		n, err := in.Read(buf)
		if err != nil {
			return
		}
		a, p, err := decodeForwarded(buf[:n])
		if err != nil {
			continue
		}
		select {
		case s.in <- fwdPacket{addr: a, b: append([]byte(nil), p...)}:
		case <-s.closed:
			return
		}
	}
}

// next waits for what ReadFrom, ReadMsgUDP or ReadBatch returns next: a
// forwarded packet (ok), else, once the gate is open, nothing (read the
// socket). A read deadline in the past (quic-go's way of stopping its
// reader) ends a wait with a timeout.
func (s *quicSock) next() (p fwdPacket, ok bool, err error) {
	for {
		if d := s.dl.Load(); d != 0 && time.Now().UnixNano() >= d {
			return p, false, os.ErrDeadlineExceeded
		}
		in := s.in
		if s.inDone.Load() {
			in = nil
		}
		if in != nil {
			select {
			case p, ok := <-in:
				if ok {
					return p, true, nil
				}
				s.inDone.Store(true)
				continue
			default:
			}
		}
		if s.gate == nil || s.gateOpen.Load() {
			return p, false, nil
		}
		select {
		case p, ok := <-in:
			if ok {
				return p, true, nil
			}
			s.inDone.Store(true)
		case <-s.gate:
			s.gateOpen.Store(true)
		case <-s.closed:
			return p, false, net.ErrClosed
		case <-s.kick:
		}
	}
}

// forward sends the packet p from a to the new process when it is its,
// and reports whether it did.
func (s *quicSock) forward(a net.Addr, p []byte) bool {
	o := s.out.Load()
	if o == nil || !(o.all.Load() || forwardsTo(p, s.r.gen, o.next)) {
		return false
	}
	o.send(a, p)
	return true
}

// ReadFrom returns the next packet for this process: forwarded ones
// first, then, once the gate is open, the socket's, forwarding what is
// the new process's when this one hands over.
func (s *quicSock) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		p, ok, err := s.next()
		if err != nil {
			return 0, nil, err
		}
		if ok {
			return copy(b, p.b), p.addr, nil
		}
		n, a, err := s.c.ReadFrom(b)
		if err != nil || !s.forward(a, b[:n]) {
			return n, a, err
		}
	}
}

// ReadMsgUDP is ReadFrom with the control messages of the socket's
// packets (none for forwarded ones).
func (s *quicSock) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	for {
		p, ok, err := s.next()
		if err != nil {
			return 0, 0, 0, nil, err
		}
		if ok {
			return copy(b, p.b), 0, 0, p.addr, nil
		}
		n, oobn, flags, addr, err = s.c.ReadMsgUDP(b, oob)
		if err != nil || !s.forward(addr, b[:n]) {
			return n, oobn, flags, addr, err
		}
	}
}

// ReadBatch is ReadFrom for many packets at once, as quic-go reads a
// UDP socket: with it and the other methods of quic.OOBCapablePacketConn
// the transport keeps its optimisations (batched reads, GSO, ECN, the
// packet info a wildcard address needs to answer from the address asked).
// A forwarded packet comes alone, without control messages.
func (s *quicSock) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		p, ok, err := s.next()
		if err != nil {
			return 0, err
		}
		if ok {
			m := &ms[0]
			m.N, m.NN, m.Flags, m.Addr = copy(m.Buffers[0], p.b), 0, 0, p.addr
			return 1, nil
		}
		n, err := s.batch.ReadBatch(ms, flags)
		if err != nil || s.out.Load() == nil {
			return n, err
		}
		// Keep what stays here at the front, copied: quic-go ties each
		// message's buffer to its index.
		k := 0
		for i := range n {
			m := &ms[i]
			if s.forward(m.Addr, m.Buffers[0][:m.N]) {
				continue
			}
			if k != i {
				d := &ms[k]
				d.N, d.NN = copy(d.Buffers[0], m.Buffers[0][:m.N]), copy(d.OOB, m.OOB[:m.NN])
				d.Flags, d.Addr = m.Flags, m.Addr
			}
			k++
		}
		if k > 0 {
			return k, nil
		}
	}
}

func (s *quicSock) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	return s.c.WriteMsgUDP(b, oob, a)
}
func (s *quicSock) SyscallConn() (syscall.RawConn, error) { return s.c.SyscallConn() }
func (s *quicSock) SetReadBuffer(n int) error             { return s.c.SetReadBuffer(n) }

// SetWriteBuffer lets quic-go size the send buffer as on a bare socket
// (without it, quic-go logs that it cannot at every start).
func (s *quicSock) SetWriteBuffer(n int) error { return s.c.SetWriteBuffer(n) }

// quic-go sizes both buffers of a socket that has these.
var _ interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
} = (*quicSock)(nil)

func (s *quicSock) WriteTo(b []byte, a net.Addr) (int, error) { return s.c.WriteTo(b, a) }
func (s *quicSock) LocalAddr() net.Addr                       { return s.c.LocalAddr() }
func (s *quicSock) SetWriteDeadline(t time.Time) error        { return s.c.SetWriteDeadline(t) }

func (s *quicSock) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.c.SetDeadline(t)
}

func (s *quicSock) SetReadDeadline(t time.Time) error {
	var d int64
	if !t.IsZero() {
		d = t.UnixNano()
	}
	s.dl.Store(d)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return s.c.SetReadDeadline(t)
}

// Close closes the socket and ends any forwarding.
func (s *quicSock) Close() error {
	s.once.Do(func() {
		close(s.closed)
		if s.r != nil {
			s.r.forget(s)
		}
		s.stopForwarding()
	})
	return s.c.Close()
}

// quicConn returns what a quic.Transport on c is to read: c itself when
// there is nothing to route (no QUICRouting, not inherited behind a
// gate), else c wrapped, reading what the old process forwards until the
// gate opens.
func (cfg Config) quicConn(c *net.UDPConn, inherited bool) (net.PacketConn, *quicSock, error) {
	gate := cfg.QUICGate
	if !inherited {
		gate = nil
	}
	if cfg.QUICRouting == nil && gate == nil {
		return c, nil, nil
	}
	var pair *net.UnixConn
	if gate != nil {
		var err error
		if pair, err = cfg.Inherited.inheritPair(cfg.Addr.String()); err != nil {
			return nil, nil, err
		}
	}
	s := newQUICSock(c, cfg.QUICRouting, gate, pair)
	return s, s, nil
}

// transport gives t the connection IDs of r; a nil r leaves quic-go's.
func (r *QUICRouting) transport(t *quic.Transport) *quic.Transport {
	if r != nil {
		t.ConnectionIDGenerator = r.gen
	}
	return t
}

// quicSockets returns the socket of a QUIC listener (its duplicate) and,
// when s routes, the forwarding pair for the new process.
func quicSockets(c *net.UDPConn, s *quicSock, network, addr string) ([]Socket, error) {
	fs := []func() (Socket, error){func() (Socket, error) { return fileOf(c, network, addr, 0) }}
	if s != nil && s.r != nil {
		fs = append(fs, func() (Socket, error) { return s.pair(addr) })
	}
	return collect(fs...)
}
