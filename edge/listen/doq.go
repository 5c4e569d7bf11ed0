package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// DoQ error codes (RFC 9250 §4.3), used to close connections and to reset
// streams.
const (
	doqNoError          = 0x0
	doqInternalError    = 0x1
	doqProtocolError    = 0x2
	doqRequestCancelled = 0x3
	doqExcessiveLoad    = 0x4
)

// doqALPN is the ALPN token of DoQ (RFC 9250 §4.1.1).
const doqALPN = "doq"

// Flow-control windows of a DoQ connection. A query is at most 65535
// bytes plus its length prefix, so a stream never needs more than
// doqStreamWindow; the connection window bounds what one client can make
// quic-go buffer for streams the listener has not read yet.
const (
	doqStreamWindow = 1 << 17
	doqConnWindow   = 1 << 21
)

// maxRefusing bounds the connections refused for a connection limit that
// wait for their handshake to complete before being closed (see refuse);
// beyond it they are closed at once.
const maxRefusing = 256

// DoQ serves DNS over dedicated QUIC connections (RFC 9250): one query
// per client-initiated bidirectional stream, length-prefixed, answered on
// the same stream. It bounds open connections (MaxConns, and
// MaxConnsPerClient per client address), concurrent streams per
// connection (MaxQueriesPerConn, enforced by QUIC flow control), streams
// served at once by the listener (MaxConcurrent), the time a query may
// take to arrive (ReadTimeout) and a reply to be taken (WriteTimeout),
// handshakes (HandshakeTimeout) and idle connections (IdleTimeout).
//
// 0-RTT is accepted (RFC 9250 §4.5): replay-safe queries that arrive
// before the handshake completes are answered at once, others are held
// until it does (see replaySafe). Its methods are safe for concurrent use.
type DoQ struct {
	*core
	pc   *net.UDPConn
	qs   *quicSock // nil: the transport reads pc itself
	tr   *quic.Transport
	ln   *quic.EarlyListener
	addr netip.AddrPort

	stop     context.Context // canceled when Close starts: ends the Accept calls
	cancel   context.CancelFunc
	refusing chan struct{} // maxRefusing slots, see refuse

	accepting sync.WaitGroup // the accept loop
	serving   sync.WaitGroup // connection goroutines and refusals

	workers *workers[doqJob]

	connMu    sync.Mutex
	conns     map[*doqConn]struct{}
	perClient map[netip.Addr]int // open connections per client address
	connsGone chan struct{}      // capacity 1: the last open connection was forgotten

	phase atomic.Pointer[doqPhase] // serving or draining, see doq_drain.go
}

// doqConn is one client connection.
type doqConn struct {
	qc            *quic.Conn
	client, local netip.AddrPort
	id            string                              // client id from the SNI
	tls           atomic.Pointer[tls.ConnectionState] // set once the handshake is complete
	wrote         atomic.Int64                        // UnixNano of the last reply written

	mu      sync.Mutex
	reading map[*quic.Stream]struct{} // streams whose query is being read
	// Streams accepted and not yet done, when the last one ended, and
	// what to call when none is left any more (see doq_drain.go).
	streams  int
	lastDone time.Time
	wake     context.CancelFunc
}

var _ interface {
	Serve() error
	Close() error
	Addr() netip.AddrPort
} = (*DoQ)(nil)

// ListenDoQ binds a UDP socket on cfg.Addr with the network ("udp4" or
// "udp6") of its family, so that a taken address or a missing IPv6 stack
// is reported here. cfg.TLS is required; the listener uses a clone with
// ALPN "doq" and TLS 1.3 at least (RFC 9250 §4.1.1, RFC 9001 §4.2).
// Handshakes made before Serve wait in quic-go's accept queue.
func ListenDoQ(cfg Config) (*DoQ, error) {
	cfg, err := cfg.withDefaults()
	if err == nil && cfg.TLS == nil {
		err = errors.New("no TLS configuration")
	}
	if err != nil {
		return nil, fmt.Errorf("doq listener: %w", err)
	}
	pc, inherited, err := bindUDP(cfg.Inherited, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s: %w", cfg.Addr, err)
	}
	qpc, qs, err := cfg.quicConn(pc, inherited)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("doq listener on %s: %w", cfg.Addr, err)
	}
	stop, cancel := context.WithCancel(context.Background())
	l := &DoQ{
		core:      newCore(cfg, pipeline.KindDoQ),
		pc:        pc,
		qs:        qs,
		addr:      unmap(pc.LocalAddr().(*net.UDPAddr).AddrPort()),
		stop:      stop,
		cancel:    cancel,
		refusing:  make(chan struct{}, maxRefusing),
		conns:     make(map[*doqConn]struct{}),
		perClient: make(map[netip.Addr]int),
		connsGone: make(chan struct{}, 1),
	}
	l.setPhase(false, time.Time{})
	l.workers = newWorkers(func(j doqJob) { l.serveStream(j.dc, j.s) }, workerIdle, 0, l.done)
	l.tr = cfg.QUICRouting.transport(cfg.QUIC.transport(&quic.Transport{Conn: qpc, VerifySourceAddress: l.busyClient}))
	l.ln, err = l.tr.ListenEarly(doqTLS(cfg.TLS), l.quicLimits(&quic.Config{
		HandshakeIdleTimeout:           cfg.HandshakeTimeout,
		MaxIdleTimeout:                 cfg.IdleTimeout,
		MaxIncomingStreams:             int64(cfg.MaxQueriesPerConn),
		MaxIncomingUniStreams:          1, // accepted only to be answered DOQ_PROTOCOL_ERROR
		InitialStreamReceiveWindow:     doqStreamWindow,
		MaxStreamReceiveWindow:         doqStreamWindow,
		InitialConnectionReceiveWindow: doqConnWindow / 4,
		MaxConnectionReceiveWindow:     doqConnWindow,
		Allow0RTT:                      true,
	}))
	if err != nil {
		cancel()
		l.tr.Close()
		l.closeSocket()
		return nil, fmt.Errorf("listen quic on %s: %w", cfg.Addr, err)
	}
	l.log = l.log.With("addr", l.addr.String())
	return l, nil
}

// SetLimits makes lim the limits of the running listener (see limits.go
// for when each applies); zero values take the defaults. It refuses
// negative values, changing nothing. Safe for concurrent use.
func (l *DoQ) SetLimits(lim Limits) error {
	_, err := l.storeLimits(lim)
	return err
}

// doqTLS returns a clone of base that negotiates DoQ, also for the
// configurations its GetConfigForClient returns. quic-go itself enforces
// TLS 1.3.
func doqTLS(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.NextProtos = []string{doqALPN}
	c.MinVersion = tls.VersionTLS13
	if get := base.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if cc == nil || err != nil {
				return cc, err
			}
			cc = cc.Clone()
			cc.NextProtos = []string{doqALPN}
			cc.MinVersion = tls.VersionTLS13
			return cc, nil
		}
	}
	return c
}

// Addr returns the address the listener is bound to, with the port the
// system picked when Config.Addr had port 0.
func (l *DoQ) Addr() netip.AddrPort { return l.addr }

// Sockets returns a duplicate of the listener's UDP socket, and the pair
// its packets are forwarded on (see QUICRouting), for the process that
// replaces this one.
func (l *DoQ) Sockets() ([]Socket, error) {
	return quicSockets(l.pc, l.qs, network("udp", l.cfg.Addr.Addr()), l.cfg.Addr.String())
}

// closeSocket closes the UDP socket, with the wrapper quic-go reads.
func (l *DoQ) closeSocket() error {
	if l.qs != nil {
		return l.qs.Close()
	}
	return l.pc.Close()
}

// Serve accepts connections until Close, then returns nil. It returns
// ErrClosed at once when the listener is already closed.
func (l *DoQ) Serve() error {
	if err := l.beginServe(func() { l.accepting.Go(l.accept) }); err != nil {
		return err
	}
	l.accepting.Wait()
	return nil
}

// Close stops accepting connections and streams, resets the streams whose
// query is still arriving, waits for the queries in flight to be answered
// (at most QueryTimeout and a short grace), then closes every connection
// with DOQ_NO_ERROR and the socket. Calling it again does nothing.
func (l *DoQ) Close() error {
	if !l.beginClose() {
		return nil
	}
	l.cancel()
	err := l.ln.Close() // handshakes in flight are refused
	l.accepting.Wait()
	for _, dc := range l.openConns() {
		dc.stopReading()
	}
	l.drain(l.limits().QueryTimeout)
	conns := l.openConns()
	l.linger(conns)
	for _, dc := range conns {
		dc.qc.CloseWithError(doqNoError, "")
	}
	l.serving.Wait()
	l.workers.wait()
	err = errors.Join(err, l.tr.Close(), l.closeSocket())
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// linger waits for the replies written last to reach their clients:
// closing a QUIC connection discards the stream data not yet sent or
// acknowledged. It waits until three smoothed RTTs (the loss detection
// time of RFC 9002 §6.2.1, roughly) have passed since the last reply on
// every connection, at most drainGrace.
func (l *DoQ) linger(conns []*doqConn) {
	var until time.Time
	for _, dc := range conns {
		if w := dc.wrote.Load(); w != 0 {
			rtt := dc.qc.ConnectionStats().SmoothedRTT
			if u := time.Unix(0, w).Add(3*rtt + 5*time.Millisecond); u.After(until) {
				until = u
			}
		}
	}
	if d := time.Until(until); d > 0 {
		time.Sleep(min(d, drainGrace))
	}
}

func (l *DoQ) openConns() []*doqConn {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	conns := make([]*doqConn, 0, len(l.conns))
	for dc := range l.conns {
		conns = append(conns, dc)
	}
	return conns
}

// accept runs the accept loop. An EarlyListener hands connections over
// once the client's first flight is processed, before the handshake
// completes, so that 0-RTT streams can be served.
func (l *DoQ) accept() {
	var backoff time.Duration
	for {
		qc, err := l.ln.Accept(l.stop)
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept quic", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.admit(qc)
	}
}

// busyClient reports whether a new connection from a, whose address is
// not validated yet, must first prove it owns the address with a QUIC
// Retry (RFC 9000 §8.1.2): when a already holds a connection. Otherwise
// Initials spoofed with a victim's address could fill its
// MaxConnsPerClient slots until the handshake timeout; a real client
// rarely opens a second connection, and then pays one round trip.
func (l *DoQ) busyClient(a net.Addr) bool {
	ap := unmap(addrPortOf(a))
	l.connMu.Lock()
	defer l.connMu.Unlock()
	return l.perClient[ap.Addr()] > 0
}

// admit serves qc, or refuses it when MaxConns connections, or
// MaxConnsPerClient from its client address, are open. Connections still
// in their handshake count, so stalled handshakes cannot pile up beyond
// the limits either.
func (l *DoQ) admit(qc *quic.Conn) {
	dc := &doqConn{
		qc:       qc,
		client:   unmap(addrPortOf(qc.RemoteAddr())),
		local:    l.addr,
		id:       clientIDFromSNI(qc.ConnectionState().TLS.ServerName, l.cfg.ServerName),
		reading:  make(map[*quic.Stream]struct{}),
		lastDone: time.Now(),
	}
	refused, why := true, reasonConnLimit
	l.connMu.Lock()
	switch {
	case len(l.conns) >= l.limits().MaxConns:
	case l.perClient[dc.client.Addr()] >= l.limits().MaxConnsPerClient:
		why = reasonClientLimit
	default:
		refused = false
		l.conns[dc] = struct{}{}
		l.perClient[dc.client.Addr()]++
	}
	l.connMu.Unlock()
	if refused {
		l.m.drop(why)
		l.log.Debug("refusing doq connection", "client", dc.client.String(), "reason", why.String())
		l.refuse(qc)
		return
	}
	l.m.connOpened()
	l.serving.Go(func() { l.serveConn(dc) })
	l.serving.Go(func() { l.watchUni(dc) })
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// refuse closes qc with DOQ_EXCESSIVE_LOAD (RFC 9250 §4.3). It waits for
// the handshake to complete first (quic-go bounds that wait with
// HandshakeTimeout): before, the close could only travel in Initial and
// Handshake packets, where RFC 9000 §10.2.3 replaces an application code
// with a bare APPLICATION_ERROR, and the client would not learn why. At
// most maxRefusing connections wait so; others are closed at once.
func (l *DoQ) refuse(qc *quic.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		qc.CloseWithError(doqExcessiveLoad, "too many connections")
		return
	}
	l.serving.Go(func() {
		defer func() { <-l.refusing }()
		select {
		case <-qc.HandshakeComplete():
		case <-qc.Context().Done():
			return
		case <-l.done:
		}
		qc.CloseWithError(doqExcessiveLoad, "too many connections")
	})
}

// serveConn accepts the streams of one connection, each served by its own
// goroutine once it holds one of the listener's MaxConcurrent slots, and
// returns when the connection is closed. While the listener drains, the
// connection is served by drainConn.
func (l *DoQ) serveConn(dc *doqConn) {
	defer l.forget(dc)
	for dc.qc.Context().Err() == nil && !l.isClosed() {
		ph := l.phase.Load()
		if ph.draining {
			l.drainConn(dc, ph)
			continue
		}
		s, err := dc.qc.AcceptStream(ph.ctx)
		if err != nil {
			if ph.ctx.Err() != nil {
				continue // the phase changed
			}
			break
		}
		l.take(dc, s)
	}
	// On Close the connection stays open until the queries in flight are
	// answered; Close then closes it.
	<-dc.qc.Context().Done()
}

// take serves the stream s of dc on a worker, or resets it when
// MaxConcurrent queries are in flight.
func (l *DoQ) take(dc *doqConn, s *quic.Stream) {
	if !l.tryAcquire() {
		// Resetting costs nothing, where reading the query to answer
		// SERVFAIL would take the goroutine the limit is there to
		// save; the client may retry elsewhere at once.
		l.m.drop(reasonOverload)
		s.CancelRead(doqExcessiveLoad)
		s.CancelWrite(doqExcessiveLoad)
		return
	}
	s.SetReadDeadline(time.Now().Add(l.limits().ReadTimeout))
	dc.begin()
	l.workers.submit(doqJob{dc, s})
}

// doqJob is one stream for a worker to serve.
type doqJob struct {
	dc *doqConn
	s  *quic.Stream
}

// forget removes a closed connection from the listener's books.
func (l *DoQ) forget(dc *doqConn) {
	l.connMu.Lock()
	delete(l.conns, dc)
	if n := l.perClient[dc.client.Addr()]; n <= 1 {
		delete(l.perClient, dc.client.Addr())
	} else {
		l.perClient[dc.client.Addr()] = n - 1
	}
	if len(l.conns) == 0 {
		select {
		case l.connsGone <- struct{}{}:
		default:
		}
	}
	l.connMu.Unlock()
	l.m.connClosed()
}

// watchUni closes the connection with DOQ_PROTOCOL_ERROR when the client
// opens a unidirectional stream (RFC 9250 §4.3.3). The listener allows
// one so that it can say so: with none allowed, quic-go would close the
// connection with the transport error STREAM_LIMIT_ERROR instead.
func (l *DoQ) watchUni(dc *doqConn) {
	if _, err := dc.qc.AcceptUniStream(dc.qc.Context()); err != nil {
		return
	}
	l.m.drop(reasonProtocol)
	l.protocolError(dc, "unidirectional stream")
}

// protocolError closes the connection of a client that broke the protocol
// with DOQ_PROTOCOL_ERROR (RFC 9250 §4.3.3).
func (l *DoQ) protocolError(dc *doqConn, what string) {
	l.log.Debug("doq protocol error, closing", "client", dc.client.String(), "error", what)
	dc.qc.CloseWithError(doqProtocolError, what)
}
