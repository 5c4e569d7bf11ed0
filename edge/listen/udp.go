package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// UDP serves DNS over UDP on Config.Sockets sockets bound to one address
// with SO_REUSEPORT, one goroutine reading each at a time. Queries are
// served concurrently by worker goroutines, or by the reading goroutine
// itself while few of them wait (see udpReader), at most MaxConcurrent at
// once; further queries are dropped and counted. Its methods are safe for
// concurrent use.
type UDP struct {
	*core
	socks   []*udpSocket
	addr    netip.AddrPort
	pktinfo bool // learn each query's destination and answer from it
	batch   int  // datagrams read and written per syscall at most
	inline  inlineMode
	readers sync.WaitGroup
	lastOOB atomic.Pointer[srcCache]
	workers *workers[udpJob]
}

// udpJob is one datagram handed from a reader to a worker, with the
// concurrency slot the reader claimed for it.
type udpJob struct {
	sock       *udpSocket
	buf        *[]byte // pooled; the datagram is (*buf)[:n]
	n          int
	act        action // checkHeader's verdict
	src, local netip.AddrPort
	ifindex    uint32 // interface the datagram came in on, with pktinfo
	received   time.Time
	reader     *udpReader // not a datagram: the reading of a socket, handed on
}

// srcCache remembers the control message of the last reply source, which
// on most hosts is the same for every query.
type srcCache struct {
	src     netip.Addr
	ifindex uint32
	oob     []byte
}

var _ interface {
	Serve() error
	Close() error
} = (*UDP)(nil)

// ListenUDP binds the UDP sockets of cfg.Addr, with the network ("udp4" or
// "udp6") of its family, so that a taken address or a missing IPv6 stack
// is reported here. Queries that arrive before Serve wait in the socket
// buffers. A socket bound to a wildcard address answers each query from
// the address it was sent to.
func ListenUDP(cfg Config) (*UDP, error) {
	return listenUDP(cfg, udpOptions{})
}

// udpOptions let tests cover the paths loopback would not take.
type udpOptions struct {
	// pktinfo reads destination addresses even on a socket bound to one
	// address.
	pktinfo bool
	// batch is the number of datagrams read or written per syscall at
	// most; 0 means udpBatch, 1 one per syscall (the path of systems
	// without recvmmsg and sendmmsg).
	batch int
	// inline chooses how batches are served (see udpReader).
	inline inlineMode
}

// inlineMode is whether a UDP reader serves its batches itself.
type inlineMode uint8

const (
	inlineAuto   inlineMode = iota // as udpReader.took chooses
	inlineNever                    // always hand datagrams to workers
	inlineAlways                   // always serve batches in place
)

// listenUDP is ListenUDP with the options o.
func listenUDP(cfg Config, o udpOptions) (*UDP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("udp listener: %w", err)
	}
	if !reusePortSupported {
		cfg.Sockets = 1
	}
	l := &UDP{
		core:    newCore(cfg, pipeline.KindUDP),
		pktinfo: o.pktinfo || cfg.Addr.Addr().IsUnspecified(),
		batch:   o.batch,
		inline:  o.inline,
	}
	if l.batch <= 0 {
		l.batch = udpBatch
	}
	l.workers = newWorkers(l.serve, workerIdle, 0, l.done)
	if err := l.bind(); err != nil {
		for _, s := range l.socks {
			s.conn.Close()
		}
		return nil, fmt.Errorf("listen on udp %s: %w", cfg.Addr, err)
	}
	l.log = l.log.With("addr", l.addr.String())
	return l, nil
}

// udpReadBuffer is the receive buffer a UDP listener asks for on each
// socket, opened or inherited: what the kernel queues while the socket
// is not read. Linux's default, 208 KiB, holds about 250 small queries on
// loopback, a 50 ms stall at 5,000 a second (a busy core, a collection,
// the start of the process that takes over in an upgrade); 4 MiB, which
// Linux grants within net.core.rmem_max and doubles, holds about 10,000.
// It costs memory only while queries wait in it.
const udpReadBuffer = 4 << 20

// bind opens the sockets, taking those the process inherited first.
// Several sockets share the address through SO_REUSEPORT, which would also
// let them join a group another listener of this user already bound,
// hiding a configuration mistake; so the address is first bound once
// without the option, which fails when it is taken and turns port 0 into
// a free port. Another process may take the port between that probe and
// the real bind: that race is accepted. The option is set even on a lone
// socket, so that a later process can add sockets to its group.
func (l *UDP) bind() error {
	ctx := context.Background()
	netw := network("udp", l.cfg.Addr.Addr())
	addr := l.cfg.Addr
	var lc net.ListenConfig
	if reusePortSupported {
		lc.Control = setReusePort
	}
	inherited := l.cfg.Inherited.count(netw, addr.String())
	for i := range inherited {
		c, err := l.cfg.Inherited.inheritUDP(netw, addr.String(), i)
		if err != nil {
			return err
		}
		l.socks = append(l.socks, newUDPSocket(c, netw == "udp6", l.batch))
	}
	if inherited > 0 {
		addr = unmap(l.socks[0].conn.LocalAddr().(*net.UDPAddr).AddrPort())
		if inherited > l.cfg.Sockets {
			// Closing the difference would lose what the kernel queued
			// on those sockets: they are all read.
			l.cfg.Logger.Info("udp listener keeps every inherited socket", "addr", addr.String(),
				"inherited", inherited, "configured", l.cfg.Sockets)
		}
	} else if reusePortSupported {
		probe, err := (&net.ListenConfig{}).ListenPacket(ctx, netw, addr.String())
		if err != nil {
			return err
		}
		addr = unmap(probe.(*net.UDPConn).LocalAddr().(*net.UDPAddr).AddrPort())
		if err := probe.Close(); err != nil {
			return err
		}
	}
	for range max(l.cfg.Sockets-inherited, 0) {
		pc, err := lc.ListenPacket(ctx, netw, addr.String())
		if err != nil {
			return err
		}
		c := pc.(*net.UDPConn)
		l.socks = append(l.socks, newUDPSocket(c, netw == "udp6", l.batch))
		if addr.Port() == 0 {
			addr = unmap(c.LocalAddr().(*net.UDPAddr).AddrPort())
		}
	}
	for _, s := range l.socks {
		// Inherited ones too: a process from before udpReadBuffer may
		// have opened them. Best effort: the kernel caps it at
		// net.core.rmem_max.
		s.conn.SetReadBuffer(udpReadBuffer)
	}
	if l.pktinfo {
		for _, s := range l.socks {
			rc, err := s.conn.SyscallConn()
			if err == nil {
				err = setPktinfo(rc, netw == "udp6")
			}
			if err != nil {
				return fmt.Errorf("ask for destination addresses: %w", err)
			}
		}
	}
	l.addr = addr
	return nil
}

// Sockets returns duplicates of the listener's sockets, for the process
// that replaces this one.
func (l *UDP) Sockets() ([]Socket, error) {
	netw := network("udp", l.cfg.Addr.Addr())
	fs := make([]func() (Socket, error), len(l.socks))
	for i, s := range l.socks {
		fs[i] = func() (Socket, error) { return fileOf(s.conn, netw, l.cfg.Addr.String(), i) }
	}
	return collect(fs...)
}

// Drain is Close: a UDP listener has no connections to let finish.
func (l *UDP) Drain(time.Duration) error { return l.Close() }

// SetLimits makes lim the limits of the running listener: QueryTimeout
// and MaxConcurrent apply from the next query; UDP has no use for the
// others. Zero values take the defaults. It refuses negative values,
// changing nothing. Safe for concurrent use.
func (l *UDP) SetLimits(lim Limits) error {
	_, err := l.storeLimits(lim)
	return err
}

// Addr returns the address the sockets are bound to, with the port the
// system picked when Config.Addr had port 0.
func (l *UDP) Addr() netip.AddrPort { return l.addr }

// Serve reads and answers queries until Close, then returns nil. It
// returns ErrClosed at once when the listener is already closed.
func (l *UDP) Serve() error {
	err := l.beginServe(func() {
		for _, s := range l.socks {
			if s.bc != nil {
				l.readers.Add(1) // done when the reading ends (udpReader.end)
				go newUDPReader(l, s).run()
			} else {
				l.readers.Go(func() { l.read(s) })
			}
		}
	})
	if err != nil {
		return err
	}
	l.readers.Wait()
	return nil
}

// Close stops reading, waits for the queries in flight to be answered (at
// most QueryTimeout and a short grace), then closes the sockets. Calling it
// again does nothing.
func (l *UDP) Close() error {
	if !l.beginClose() {
		return nil
	}
	past := time.Unix(1, 0)
	for _, s := range l.socks {
		s.conn.SetReadDeadline(past) // unblocks the readers
	}
	l.readers.Wait()
	l.drain(l.limits().QueryTimeout)
	var errs []error
	for _, s := range l.socks {
		if err := s.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.workers.wait()
	return errors.Join(errs...)
}

// read is the loop of one socket that reads a datagram per syscall: it
// reads into a buffer of its own and hands accept a copy of the datagram
// in a buffer of its size.
func (l *UDP) read(s *udpSocket) {
	var oob []byte
	if l.pktinfo {
		oob = make([]byte, oobSize)
	}
	var backoff time.Duration
	buf := getBuf()
	defer putBuf(buf)
	for {
		n, oobn, _, src, err := s.conn.ReadMsgUDPAddrPort((*buf)[:dns.MaxMsgSize], oob)
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = l.readFailed(err, backoff)
			continue
		}
		backoff = 0
		c := copyBuf((*buf)[:n])
		if !l.accept(s, c, n, src, oob[:oobn], time.Now()) {
			putBuf(c)
		}
	}
}

// readFailed logs a read error other than the listener closing and
// sleeps before the next attempt, twice as long as the last time.
func (l *UDP) readFailed(err error, backoff time.Duration) time.Duration {
	backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
	l.log.Debug("read udp", "err", err, "retry_in", backoff)
	time.Sleep(backoff)
	return backoff
}

// accept drops the datagram (*buf)[:n] from src at once when it is junk
// or the listener is overloaded, and otherwise hands it, with buf, to an
// idle worker, or to a new one when all are busy; oob holds the control
// messages read with it. It reports whether buf was handed over.
func (l *UDP) accept(s *udpSocket, buf *[]byte, n int, src netip.AddrPort, oob []byte, received time.Time) bool {
	j, ok := l.admit(s, buf, n, src, oob, received)
	if ok {
		l.workers.submit(j)
	}
	return ok
}

// admit is accept's check: the job of the datagram (*buf)[:n], with its
// query slot claimed, or false when it is dropped.
func (l *UDP) admit(s *udpSocket, buf *[]byte, n int, src netip.AddrPort, oob []byte, received time.Time) (udpJob, bool) {
	l.m.query()
	act, why := checkHeader((*buf)[:n])
	if act == actDrop {
		l.m.drop(why)
		return udpJob{}, false
	}
	if !l.tryAcquire() {
		l.m.drop(reasonOverload)
		return udpJob{}, false
	}
	local, ifindex := l.addr, uint32(0)
	if l.pktinfo {
		if dst, ifi, ok := parseDst(oob); ok {
			local, ifindex = netip.AddrPortFrom(dst, l.addr.Port()), ifi
		}
	}
	return udpJob{sock: s, buf: buf, n: n, act: act, src: unmap(src), local: local, ifindex: ifindex, received: received}, true
}

// serve answers the datagram of j on a worker and gives its buffer back;
// its slot is released once the reply is written (see send). A job that
// carries the reading of a socket (reader) runs it instead.
func (l *UDP) serve(j udpJob) {
	if j.reader != nil {
		j.reader.run()
		return
	}
	if r, ok := l.reply(j, waitHook{w: j.sock}); ok {
		l.send(j.sock, r)
	}
}

// reply answers the datagram of j, telling h when the query is about to
// wait, and gives its buffer back. It returns the reply to write, or false
// when there is none (and the query's slot was released).
func (l *UDP) reply(j udpJob, h waitHook) (udpReply, bool) {
	b := (*j.buf)[:j.n]
	q, act := (*dns.Msg)(nil), j.act
	if act == actServe {
		q, act = parseQuery(b)
	}
	if act != actServe {
		out := getBufFor(len(b)) // a refusal is never longer than the query
		r := reject(b, q, act, *out)
		l.m.response(rejectRcode(act), false)
		putBuf(j.buf)
		return udpReply{b: r, buf: out, dst: j.src, from: j.local.Addr(), ifindex: j.ifindex}, true
	}
	req := getRequest()
	*req = pipeline.Request{
		Msg:      q,
		Wire:     b,
		Client:   j.src,
		Local:    j.local,
		Listener: pipeline.KindUDP,
		Received: j.received,
		MaxSize:  udpSize(q),
	}
	out, obuf := l.answerHooked(req, 0, h)
	putRequest(req)
	putBuf(j.buf) // lent as req.Wire until the reply was packed
	if out == nil {
		l.release()
		return udpReply{}, false
	}
	return udpReply{b: out, buf: obuf, dst: j.src, from: j.local.Addr(), ifindex: j.ifindex}, true
}

// write sends one reply, from the address the query went to when the
// socket is bound to a wildcard address.
func (l *UDP) write(s *udpSocket, r *udpReply) {
	var err error
	if l.pktinfo {
		_, _, err = s.conn.WriteMsgUDPAddrPort(r.b, l.oobFor(r.from, r.ifindex), r.dst)
	} else {
		_, err = s.conn.WriteToUDPAddrPort(r.b, r.dst)
	}
	if err != nil {
		l.log.Debug("write udp reply", "client", r.dst.String(), "err", err)
	}
}

// oobFor returns the control message that sends a reply from src.
func (l *UDP) oobFor(src netip.Addr, ifindex uint32) []byte {
	if e := l.lastOOB.Load(); e != nil && e.src == src && e.ifindex == ifindex {
		return e.oob
	}
	e := &srcCache{src: src, ifindex: ifindex, oob: srcOOB(src, ifindex)}
	l.lastOOB.Store(e)
	return e.oob
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
