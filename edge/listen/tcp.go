package listen

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/listen/internal/coalesce"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/rawio"
)

// TCP serves DNS over TCP (RFC 7766): length-prefixed messages, several
// queries per connection served concurrently and answered as they
// complete. It bounds open connections (MaxConns), queries in flight per
// connection (MaxQueriesPerConn) and per listener (MaxConcurrent), and
// closes connections that idle, send too slowly or read too slowly. Its
// methods are safe for concurrent use.
type TCP struct {
	*core
	ln    *net.TCPListener
	addr  netip.AddrPort
	slots *limiter // MaxConcurrent query slots; a reader waits for one

	accepting sync.WaitGroup // the accept loop
	draining  atomic.Bool    // Drain has stopped the accept loop
	reading   sync.WaitGroup // connection read loops
	serving   sync.WaitGroup // connection goroutines, until the connection is closed

	workers *workers[tcpJob]

	tls *tls.Config // DoT only: the server config, ALPN "dot"

	connMu sync.Mutex
	conns  map[*tcpConn]struct{}
	perIP  map[netip.Addr]int // open connections by client address
}

// tcpConn is one client connection.
type tcpConn struct {
	conn          net.Conn
	client, local netip.AddrPort
	clientID      string               // DoT: from the SNI
	state         *tls.ConnectionState // DoT: set once the handshake is done
	slots         chan struct{}        // MaxQueriesPerConn query slots
	flight        flight               // queries in flight on this connection
	evicted       atomic.Bool          // closed to make room for another client
	memo          pipeline.ConnMemo    // what stages keep for the connection's queries

	wmu sync.Mutex      // guards w
	w   coalesce.Writer // replies, set up once the connection is ready for them
}

// tcpJob is one query read from a connection, for a worker to serve.
type tcpJob struct {
	tc       *tcpConn
	buf      *[]byte
	n        int
	act      action
	received time.Time
}

var _ interface {
	Serve() error
	Close() error
} = (*TCP)(nil)

// ListenTCP binds cfg.Addr with the network ("tcp4" or "tcp6") of its
// family, so that a taken address or a missing IPv6 stack is reported
// here. Connections made before Serve wait in the accept queue.
func ListenTCP(cfg Config) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("tcp listener: %w", err)
	}
	return listenStream(cfg, pipeline.KindTCP, nil)
}

// ListenDoT binds cfg.Addr like ListenTCP and serves DNS over TLS (RFC
// 7858) on it: the same RFC 7766 framing, pipelining and limits, behind a
// TLS handshake that must finish within cfg.HandshakeTimeout. cfg.TLS is
// required; the listener uses a clone with ALPN "dot" and at least TLS 1.2
// (RFC 8310 §8.1 / RFC 7525). A client address may hold at most
// cfg.MaxConnsPerClient connections. The client id is the first label of
// the SNI under cfg.ServerName.
func ListenDoT(cfg Config) (*TCP, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("dot listener: %w", err)
	}
	if cfg.TLS == nil {
		return nil, errors.New("dot listener: no TLS configuration")
	}
	return listenStream(cfg, pipeline.KindDoT, serverTLS(cfg.TLS, "dot"))
}

// acmeALPN is the protocol of the ACME TLS-ALPN-01 challenge (RFC 8737):
// a certificate source that answers it adds it to the server config's
// NextProtos, and a listener closes a connection that negotiated it right
// after the handshake, since the challenge is the handshake.
const acmeALPN = "acme-tls/1"

// serverTLS clones c for a listener speaking alpn: the protocol goes first
// in NextProtos (keeping others, such as the ACME TLS-ALPN challenge's),
// and the minimum version is raised to TLS 1.2.
func serverTLS(c *tls.Config, alpn ...string) *tls.Config {
	c = c.Clone()
	protos := append([]string(nil), alpn...)
	for _, p := range c.NextProtos {
		if !slices.Contains(protos, p) {
			protos = append(protos, p)
		}
	}
	c.NextProtos = protos
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

func listenStream(cfg Config, kind pipeline.Kind, tc *tls.Config) (*TCP, error) {
	tl, err := bindTCP(cfg.Inherited, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", kind, cfg.Addr, err)
	}
	l := &TCP{
		core:  newCore(cfg, kind),
		ln:    tl,
		addr:  unmap(tl.Addr().(*net.TCPAddr).AddrPort()),
		slots: newLimiter(cfg.MaxConcurrent),
		conns: make(map[*tcpConn]struct{}),
		perIP: make(map[netip.Addr]int),
		tls:   tc,
	}
	l.workers = newWorkers(l.serve, workerIdle, 0, l.done)
	l.log = l.log.With("addr", l.addr.String())
	return l, nil
}

// Addr returns the address the listener is bound to, with the port the
// system picked when Config.Addr had port 0.
func (l *TCP) Addr() netip.AddrPort { return l.addr }

// bindTCP returns the TCP listener of addr inherited in in, or binds one.
func bindTCP(in *Inherited, addr netip.AddrPort) (*net.TCPListener, error) {
	netw := network("tcp", addr.Addr())
	if tl, err := in.inheritTCP(netw, addr.String()); tl != nil || err != nil {
		return tl, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), netw, addr.String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// Sockets returns a duplicate of the listening socket, for the process
// that replaces this one.
func (l *TCP) Sockets() ([]Socket, error) {
	return collect(func() (Socket, error) {
		return fileOf(l.ln, network("tcp", l.cfg.Addr.Addr()), l.cfg.Addr.String(), 0)
	})
}

// Drain stops accepting connections (the listening socket stays open in
// the processes that hold it) and lets the open ones run on until their
// clients close them, they idle out, or timeout passes; then it closes
// like Close, answering the queries in flight first.
func (l *TCP) Drain(timeout time.Duration) error {
	l.draining.Store(true)
	l.ln.Close()
	l.accepting.Wait()
	done := make(chan struct{})
	go func() { l.reading.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	return l.Close()
}

// Serve accepts connections until Close, then returns nil. It returns
// ErrClosed at once when the listener is already closed.
func (l *TCP) Serve() error {
	err := l.beginServe(func() { l.accepting.Go(l.accept) })
	if err != nil {
		return err
	}
	l.accepting.Wait()
	return nil
}

// Close stops accepting and reading, waits for the queries in flight to be
// answered (at most QueryTimeout and a short grace), then closes every
// connection. Calling it again does nothing.
func (l *TCP) Close() error {
	if !l.beginClose() {
		return nil
	}
	err := l.ln.Close()
	l.accepting.Wait()
	past := time.Unix(1, 0)
	l.connMu.Lock()
	for tc := range l.conns {
		tc.conn.SetReadDeadline(past) // unblocks the reader
	}
	l.connMu.Unlock()
	l.reading.Wait()
	l.drain(l.limits().QueryTimeout)
	l.connMu.Lock()
	for tc := range l.conns {
		tc.conn.Close()
	}
	l.connMu.Unlock()
	l.serving.Wait()
	l.workers.wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// accept runs the accept loop. Errors such as running out of file
// descriptors are retried with a growing pause, as net/http does.
func (l *TCP) accept() {
	var backoff time.Duration
	for {
		conn, err := l.ln.AcceptTCP()
		if err != nil {
			if l.isClosed() || l.draining.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept tcp", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		lim := l.limits()
		tc := &tcpConn{
			conn:   rawio.Stream(conn),
			client: unmap(conn.RemoteAddr().(*net.TCPAddr).AddrPort()),
			local:  unmap(conn.LocalAddr().(*net.TCPAddr).AddrPort()),
			slots:  make(chan struct{}, lim.MaxQueriesPerConn),
			flight: newFlight(),
		}
		l.connMu.Lock()
		if r := l.admitConn(tc.client.Addr(), lim); r != reasonNone {
			l.connMu.Unlock()
			l.m.drop(r) // counted before the client can see the close
			conn.Close()
			l.log.Debug("connection refused", "client", tc.client.String(), "reason", r.String())
			continue
		}
		l.conns[tc] = struct{}{}
		l.perIP[tc.client.Addr()]++
		l.connMu.Unlock()
		l.m.connOpened()
		l.reading.Add(1)
		l.serving.Go(func() { l.serveConn(tc) })
	}
}

// connHeadroom is the share (1/connHeadroom) of MaxConns kept for the
// clients that hold few connections.
const connHeadroom = 16

// admitConn decides, under connMu, whether a new connection from client
// may open, reasonNone when it may (RFC 7766 §6.2.2 asks servers to
// protect themselves from clients that hold many connections):
//
//   - a client holding MaxConnsPerClient already is refused;
//   - past MaxConns − MaxConns/16 only clients that hold fewer than a
//     quarter of that headroom (at least one) are let in, so a few heavy
//     clients cannot lock the others out, and a client whose query was
//     truncated can still retry over TCP;
//   - at MaxConns, an idle connection (no query in flight) of the client
//     holding the most is closed to make room, when that client holds
//     more than the newcomer would; otherwise the newcomer is refused.
//
// Evicted connections count until their reader has closed them, which
// may take the listener a little past MaxConns for a moment.
func (l *TCP) admitConn(client netip.Addr, lim *Limits) reason {
	held := l.perIP[client]
	open := len(l.conns)
	switch {
	case held >= lim.MaxConnsPerClient:
		return reasonClientLimit
	case open >= lim.MaxConns:
		if l.evictIdleLocked(held + 1) {
			return reasonNone
		}
		return reasonConnLimit
	case open >= lim.MaxConns-lim.MaxConns/connHeadroom && held >= max(1, lim.MaxConns/connHeadroom/4):
		return reasonClientLimit
	}
	return reasonNone
}

// evictIdleLocked closes an idle connection of the client holding the
// most connections, if it holds more than than; false when there is
// none to close. Called with connMu held.
func (l *TCP) evictIdleLocked(than int) bool {
	var heavy netip.Addr
	most := 0
	for a, n := range l.perIP {
		if n > most {
			heavy, most = a, n
		}
	}
	if most <= than {
		return false
	}
	for tc := range l.conns {
		if tc.client.Addr() != heavy || tc.flight.n.Load() > 0 || tc.evicted.Load() {
			continue
		}
		tc.evicted.Store(true)
		tc.conn.SetReadDeadline(time.Unix(1, 0)) // its reader returns and closes it
		l.m.drop(reasonEvicted)
		return true
	}
	return false
}

// serveConn reads the queries of one connection, then waits for their
// answers and closes it.
func (l *TCP) serveConn(tc *tcpConn) {
	if l.tls == nil || l.handshake(tc) {
		tc.w.Init(&tc.wmu, tc.conn, l.writeTimeout, false, func(err error) {
			l.log.Debug("write tcp reply, closing", "client", tc.client.String(), "err", err)
		})
		l.read(tc)
	}
	l.reading.Done()
	tc.flight.wait(nil, l.drained)
	tc.conn.Close()
	l.connMu.Lock()
	delete(l.conns, tc)
	if n := l.perIP[tc.client.Addr()]; n <= 1 {
		delete(l.perIP, tc.client.Addr())
	} else {
		l.perIP[tc.client.Addr()] = n - 1
	}
	l.connMu.Unlock()
	l.m.connClosed()
}

// handshake runs the TLS handshake of a DoT connection within
// HandshakeTimeout and records what it learned, false when it failed and
// the connection is to be closed. The deadline also cuts clients that
// connect and then send nothing, or send their hello a byte at a time.
func (l *TCP) handshake(tc *tcpConn) bool {
	conn := tls.Server(tc.conn, l.tls)
	l.connMu.Lock()
	tc.conn = conn // Close's deadlines now reach the handshake too
	l.connMu.Unlock()
	conn.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	if l.isClosed() || tc.evicted.Load() {
		conn.SetDeadline(time.Unix(1, 0))
	}
	if err := conn.Handshake(); err != nil {
		if !l.isClosed() {
			l.m.drop(reasonTLS)
			l.log.Debug("tls handshake", "client", tc.client.String(), "err", err)
		}
		return false
	}
	conn.SetDeadline(time.Time{})
	if tc.evicted.Load() {
		return false
	}
	st := conn.ConnectionState()
	if st.NegotiatedProtocol == acmeALPN {
		return false // the ACME server only wanted the challenge certificate
	}
	tc.state = &st
	tc.clientID = clientIDFromSNI(st.ServerName, l.cfg.ServerName)
	return true
}

// read is the read loop of one connection. It returns when the client
// closes the connection or misbehaves, on a timeout, or on Close.
func (l *TCP) read(tc *tcpConn) {
	// Over TLS the records are already buffered, decrypted, inside the
	// tls.Conn: a small reader keeps idle DoT connections light. Over TCP
	// a bigger one takes a burst of pipelined queries in one read.
	size := 2048
	if l.tls != nil {
		size = 512
	}
	br := bufio.NewReaderSize(tc.conn, size)
	arm := func(s stage) {
		lim := l.limits()
		d := lim.ReadTimeout
		if s == stageIdle {
			d = lim.IdleTimeout
		}
		tc.conn.SetReadDeadline(time.Now().Add(d))
		if l.isClosed() || tc.evicted.Load() {
			// Close or an eviction may have set its deadline in the
			// past just before.
			tc.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
	for {
		// Stop reading while this connection has its quota in flight.
		// A free slot is taken without the two-way select, which costs
		// more than the query's parse.
		select {
		case tc.slots <- struct{}{}:
		default:
			select {
			case tc.slots <- struct{}{}:
			case <-l.done:
				return
			}
		}
		// Wait for the next message before taking a 64 KiB buffer, so an
		// idle connection holds none.
		var (
			buf     *[]byte
			n       int
			started bool
		)
		if br.Buffered() == 0 {
			arm(stageIdle)
		}
		_, err := br.Peek(1)
		if err == nil {
			buf = getBuf()
			n, started, err = readFrame(br, *buf, arm)
			if err == nil && n < len(*buf)/2 {
				// The query waits for its answer in a buffer of its size.
				c := copyBuf((*buf)[:n])
				putBuf(buf)
				buf = c
			}
		}
		received := time.Now()
		if err == nil {
			err = l.acquire()
		}
		if err != nil {
			if buf != nil {
				putBuf(buf)
			}
			<-tc.slots
			var ne net.Error
			switch {
			case l.isClosed():
			case tc.evicted.Load():
				l.log.Debug("idle tcp connection closed for another client", "client", tc.client.String())
			case !started && errors.As(err, &ne) && ne.Timeout() && tc.flight.n.Load() > 0:
				continue // idle only counts once every answer is out
			case !started && (errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout()):
				l.log.Debug("tcp connection idle or closed", "client", tc.client.String(), "err", err)
			default:
				l.log.Debug("read tcp", "client", tc.client.String(), "err", err)
			}
			return
		}
		l.m.query()
		act, why := checkHeader((*buf)[:n])
		if act == actDrop {
			putBuf(buf)
			<-tc.slots
			l.release()
			l.m.drop(why)
			l.log.Debug("junk on tcp, closing", "client", tc.client.String(), "reason", why.String())
			return
		}
		tc.flight.add()
		l.workers.submit(tcpJob{tc: tc, buf: buf, n: n, act: act, received: received})
	}
}

// acquire waits for one of the listener's query slots; release gives it
// back.
func (l *TCP) acquire() error {
	if !l.slots.acquire(l.done) {
		return ErrClosed
	}
	l.flight.add()
	return nil
}

func (l *TCP) release() {
	l.slots.release()
	l.flight.done()
}

// SetLimits makes lim the limits of the running listener (see limits.go
// for when each applies); zero values take the defaults. It refuses
// negative values, changing nothing. Safe for concurrent use.
func (l *TCP) SetLimits(lim Limits) error {
	cur, err := l.storeLimits(lim)
	l.slots.setMax(cur.MaxConcurrent)
	return err
}

// serve answers the message in buf[:n], whose header checkHeader judged
// act, and gives buf back.
func (l *TCP) serve(j tcpJob) {
	tc, buf, n, act, received := j.tc, j.buf, j.n, j.act, j.received
	defer func() {
		<-tc.slots
		tc.flight.done()
		l.release()
	}()
	b := (*buf)[:n]
	var q *dns.Msg
	if act == actServe {
		q, act = parseQuery(b)
	}
	if act != actServe {
		out := getBufFor(2 + len(b)) // a refusal is never longer than the query
		out, r := inBuf(out, 2, reject(b, q, act, (*out)[2:]))
		putBuf(buf)
		l.write(tc, r, out)
		l.m.response(rejectRcode(act), false)
		return
	}
	req := getRequest()
	*req = pipeline.Request{
		Msg:      q,
		Wire:     b,
		Client:   tc.client,
		Local:    tc.local,
		Listener: l.kind,
		ClientID: tc.clientID,
		TLS:      tc.state,
		Conn:     &tc.memo,
		Received: received,
		MaxSize:  dns.MaxMsgSize,
	}
	out, obuf := l.answer(req, 2)
	putRequest(req)
	putBuf(buf) // lent as req.Wire until the reply was packed
	if out != nil {
		l.write(tc, out, obuf)
	}
}

// write sends b, which sits at (*buf)[2:], with its length prefix, then
// gives buf back. A client that does not take the replies within
// WriteTimeout is disconnected.
//
// Replies that are ready together leave together (internal/coalesce):
// the first writer becomes the flusher, yields once so that the other
// queries of the connection that are ready can finish and queue their
// replies, then writes everything queued in one call, which is one
// syscall on TCP and one TLS record on DoT (a pipelining client such as a
// stub resolver or dnsperf gets many answers per write).
func (l *TCP) write(tc *tcpConn, b []byte, buf *[]byte) {
	frame := (*buf)[:2+len(b)]
	frame[0], frame[1] = byte(len(b)>>8), byte(len(b))
	tc.wmu.Lock()
	// A client that reads slower than it asks must not make replies pile
	// up here: past maxPending, writers wait for the flusher, holding
	// their query slots, so the connection is not read meanwhile.
	for !tc.w.BrokenLocked() && tc.w.QueuedLocked() > 0 && tc.w.QueuedLocked()+len(frame) > maxPending {
		tc.w.WaitLocked()
	}
	tc.w.Write(frame) // nothing when broken
	putBuf(buf)
	flush := tc.w.StartLocked()
	tc.wmu.Unlock()
	if flush {
		runtime.Gosched()
		tc.w.Flush()
	}
}

// writeTimeout returns Config.WriteTimeout.
func (l *TCP) writeTimeout() time.Duration { return l.cfg.WriteTimeout }

// maxPending bounds the replies waiting to be written on one connection.
const maxPending = 2 * maxFrame
