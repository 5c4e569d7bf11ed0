package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// dohLimiter counts the open connections of a listener, in total and by
// client address, and refuses those beyond Config.MaxConns or
// Config.MaxConnsPerClient. Safe for concurrent use.
type dohLimiter struct {
	c         *core
	mu        sync.Mutex
	total     int
	perClient map[netip.Addr]int
}

func newDoHLimiter(c *core) *dohLimiter {
	return &dohLimiter{c: c, perClient: make(map[netip.Addr]int)}
}

// admit claims a connection slot for client, false (and counted as a
// drop) when a cap is reached. Each true is paired with leave.
func (cl *dohLimiter) admit(client netip.Addr) bool {
	maxConns := cl.c.limits().MaxConns
	cl.mu.Lock()
	switch {
	case cl.total >= maxConns:
		cl.mu.Unlock()
		cl.c.m.drop(reasonConnLimit)
		cl.c.log.Debug("too many connections", "client", client.String(), "max", maxConns)
		return false
	case cl.perClient[client] >= cl.c.limits().MaxConnsPerClient:
		cl.mu.Unlock()
		cl.c.m.drop(reasonClientLimit)
		cl.c.log.Debug("too many connections from client", "client", client.String(), "max", cl.c.limits().MaxConnsPerClient)
		return false
	}
	cl.total++
	cl.perClient[client]++
	cl.mu.Unlock()
	cl.c.m.connOpened()
	return true
}

func (cl *dohLimiter) leave(client netip.Addr) {
	cl.mu.Lock()
	cl.total--
	if n := cl.perClient[client] - 1; n > 0 {
		cl.perClient[client] = n
	} else {
		delete(cl.perClient, client)
	}
	cl.mu.Unlock()
	cl.c.m.connClosed()
}

// open returns the number of connections held.
func (cl *dohLimiter) open() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.total
}

// dohConn is an admitted TCP connection; closing it gives its slot back.
// It embeds *net.TCPConn so that net/http still finds CloseWrite.
type dohConn struct {
	*net.TCPConn
	ln          *dohListener
	client      netip.Addr
	closed      atomic.Bool
	handshaking atomic.Bool // in dohListener.handshake
}

func (c *dohConn) Close() error {
	err := c.TCPConn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.ln.forget(c)
	}
	return err
}

// dohListener is the net.Listener the HTTP server accepts from. Its own
// accept loop applies the connection caps and, unless tlsConf is nil
// (h2c), completes each TLS handshake within Config.HandshakeTimeout in a
// goroutine of its own, so a stalled client holds neither the accept loop
// nor an HTTP server goroutine. Accept returns connections ready for
// HTTP. Safe for concurrent use.
type dohListener struct {
	c       *core
	tcp     *net.TCPListener
	tlsConf *tls.Config // nil: cleartext (h2c)
	limit   *dohLimiter
	// h2, when set, serves the connections that negotiated "h2" instead
	// of handing them to Accept. It must not block.
	h2 func(*tls.Conn, *dohConn)

	ready  chan net.Conn // connections for Accept
	stop   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and handshakes

	mu    sync.Mutex
	conns map[*dohConn]struct{} // admitted and not yet closed
}

func newDoHListener(c *core, tcp *net.TCPListener, tlsConf *tls.Config) *dohListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &dohListener{
		c:       c,
		tcp:     tcp,
		tlsConf: tlsConf,
		limit:   newDoHLimiter(c),
		ready:   make(chan net.Conn),
		stop:    ctx,
		cancel:  cancel,
		conns:   make(map[*dohConn]struct{}),
	}
}

// start runs the accept loop until Close.
func (dl *dohListener) start() { dl.wg.Go(dl.acceptLoop) }

// Accept returns the next connection, ready for HTTP, or net.ErrClosed
// once the listener is closed.
func (dl *dohListener) Accept() (net.Conn, error) {
	select {
	case c := <-dl.ready:
		return c, nil
	case <-dl.stop.Done():
		return nil, ErrClosed
	}
}

// Close stops accepting and aborts handshakes in progress; connections
// already handed to Accept stay open. Calling it again does nothing.
func (dl *dohListener) Close() error {
	dl.cancel()
	err := dl.tcp.Close()
	past := time.Unix(1, 0)
	dl.mu.Lock()
	for c := range dl.conns {
		if c.handshaking.Load() {
			c.SetDeadline(past)
		}
	}
	dl.mu.Unlock()
	dl.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (dl *dohListener) Addr() net.Addr { return dl.tcp.Addr() }

func (dl *dohListener) acceptLoop() {
	var backoff time.Duration
	for {
		tc, err := dl.tcp.AcceptTCP()
		if err != nil {
			if dl.stop.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			dl.c.log.Warn("accept tcp", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-dl.stop.Done():
				return
			}
			continue
		}
		backoff = 0
		client := unmap(tc.RemoteAddr().(*net.TCPAddr).AddrPort()).Addr()
		if !dl.limit.admit(client) {
			tc.SetLinger(0) // reset: the client learns at once
			tc.Close()
			continue
		}
		c := &dohConn{TCPConn: tc, ln: dl, client: client}
		dl.mu.Lock()
		dl.conns[c] = struct{}{}
		dl.mu.Unlock()
		if dl.tlsConf == nil {
			dl.hand(c)
			continue
		}
		dl.wg.Go(func() { dl.handshake(c) })
	}
}

// handshake completes the TLS handshake of c within HandshakeTimeout and
// hands the connection to Accept; a failed handshake is counted and
// closes c. A deadline bounds it rather than a context, which would cost
// a goroutine per handshake; Close moves the deadline to the past.
func (dl *dohListener) handshake(c *dohConn) {
	c.handshaking.Store(true)
	c.SetDeadline(time.Now().Add(dl.c.cfg.HandshakeTimeout))
	tc := tls.Server(c, dl.tlsConf)
	err := errors.New("listener closed")
	if dl.stop.Err() == nil {
		err = tc.Handshake()
	}
	c.handshaking.Store(false)
	if err != nil {
		if dl.stop.Err() == nil {
			dl.c.m.drop(reasonTLS)
			dl.c.log.Debug("tls handshake", "client", c.client.String(), "err", err)
		}
		tc.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == acmeALPN {
		tc.Close() // the ACME server only wanted the challenge certificate
		return
	}
	c.SetDeadline(time.Time{})
	if dl.h2 != nil && tc.ConnectionState().NegotiatedProtocol == "h2" {
		if dl.stop.Err() != nil {
			tc.Close()
			return
		}
		dl.h2(tc, c)
		return
	}
	dl.hand(tc)
}

// hand gives c to Accept, or closes it when the listener closes first.
func (dl *dohListener) hand(c net.Conn) {
	select {
	case dl.ready <- c:
	case <-dl.stop.Done():
		c.Close()
	}
}

func (dl *dohListener) forget(c *dohConn) {
	dl.mu.Lock()
	delete(dl.conns, c)
	dl.mu.Unlock()
	dl.limit.leave(c.client)
}

// closeAll closes every admitted connection still open.
func (dl *dohListener) closeAll() {
	dl.mu.Lock()
	open := make([]*dohConn, 0, len(dl.conns))
	for c := range dl.conns {
		open = append(open, c)
	}
	dl.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// dohQUICListener applies the connection caps to an HTTP/3 listener: an
// accepted QUIC connection beyond them is closed at once. The slot of a
// connection is given back when its context ends.
type dohQUICListener struct {
	*quic.Listener
	limit *dohLimiter
}

// Accept returns the next connection within the caps.
func (ql *dohQUICListener) Accept(ctx context.Context) (*quic.Conn, error) {
	for {
		conn, err := ql.Listener.Accept(ctx)
		if err != nil {
			return nil, err
		}
		var client netip.Addr
		if ua, ok := conn.RemoteAddr().(*net.UDPAddr); ok {
			client = unmap(ua.AddrPort()).Addr()
		}
		if !ql.limit.admit(client) {
			conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "too many connections")
			continue
		}
		context.AfterFunc(conn.Context(), func() { ql.limit.leave(client) })
		return conn, nil
	}
}
