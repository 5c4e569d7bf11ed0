package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

var _ Exchanger = (*DoQ)(nil)

// DoQ error codes (RFC 9250 §4.3).
const (
	doqNoError          quic.ApplicationErrorCode = 0x0
	doqRequestCancelled quic.StreamErrorCode      = 0x3
)

// DoQConfig tunes a DoQ exchanger. The zero value of a field takes the
// default documented on it.
type DoQConfig struct {
	// IdleTimeout is the QUIC idle timeout offered (RFC 9000 §10.1): a
	// connection that receives nothing for this long is closed, and the
	// next query dials again. Default 30s.
	IdleTimeout time.Duration
}

// DoQ exchanges queries with one upstream address over DNS over dedicated
// QUIC connections (RFC 9250). One connection, dialed by the first query
// that needs it, carries every query, each on its own bidirectional
// stream: a two-byte length prefix, the message with ID 0 (§4.2.1), then
// STREAM FIN; the reply is read the same way and given q's ID. The
// handshake offers ALPN "doq", and the TLS session cache of the exchanger
// lets a new connection resume the last session (0-RTT is not used).
//
// The UDP socket is bound to addr's family ("udp4" or "udp6"), so the path
// stays on its family. A connection that dies (idle timeout, closed or
// reset by the peer) is replaced by the next query; a query that failed on
// a connection that died under it, which it did not dial itself, is
// retried once on a new one. When a query times out and nothing at all
// was received on its connection meanwhile, new queries go to a new
// connection, as TCP does; the silent one keeps the queries already on it
// until its idle timeout ends it.
//
// A DoQ is safe for concurrent use. Close closes every connection with
// DOQ_NO_ERROR and the socket.
type DoQ struct {
	p     pinnedAddr
	tls   *tls.Config
	qconf *quic.Config
	qd    *quicDialer
	dial  chan struct{} // one token: one dial at a time

	life context.Context // canceled by Close
	stop context.CancelFunc

	mu    sync.Mutex
	cur   *quic.Conn              // the connection new queries use
	conns map[*quic.Conn]struct{} // every live connection
}

// NewDoQ returns a DoQ exchanger for addr (an IPv4-mapped address counts
// as IPv4) verifying the server as base says. base must carry a
// ServerName: ClientTLSConfig builds one; it is cloned, not kept. It dials
// nothing until the first query.
func NewDoQ(addr netip.AddrPort, base *tls.Config, cfg DoQConfig) (*DoQ, error) {
	conf, err := exchangerTLS(base, "doq")
	if err != nil {
		return nil, fmt.Errorf("new doq exchanger for %s: %w", addr, err)
	}
	conf.MinVersion = tls.VersionTLS13
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	p := pin(addr, "udp")
	life, stop := context.WithCancel(context.Background())
	return &DoQ{
		p:     p,
		tls:   conf,
		qconf: &quic.Config{MaxIdleTimeout: cfg.IdleTimeout},
		qd:    &quicDialer{p: p},
		dial:  make(chan struct{}, 1),
		life:  life,
		stop:  stop,
		conns: make(map[*quic.Conn]struct{}),
	}, nil
}

// Exchange sends q and returns the matching reply, with q's ID. q is not
// modified. The ctx deadline bounds dialing, the handshake, opening the
// stream (which waits while the server's stream limit is reached) and the
// reply.
//
// Errors: ClassTimeout at the deadline; ClassNetwork when the dial or
// handshake fails (certificate verification failure included), the
// connection dies or the server resets the stream; ClassMalformed when the
// stream ends without a whole reply or the reply does not parse or match;
// ClassCanceled when ctx is canceled or the exchanger is closed (wrapping
// net.ErrClosed).
func (d *DoQ) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if ctx.Err() != nil {
		return nil, d.p.failCtx(ctx, nil)
	}
	bp := getMsgBuf()
	defer putMsgBuf(bp)
	m := upstreamQuery(q, 0)
	if d.p.signer == nil && m.IsTsig() == nil {
		padQuery(m)
	}
	wire, mac, err := d.p.packQuery(m, (*bp)[2:])
	if err != nil || len(wire) > maxMsgSize-2 {
		return nil, d.p.fail(ClassCanceled, fmt.Errorf("pack query: %d bytes: %w", len(wire), err))
	}
	frame := append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(wire)), uint16(len(wire))), wire...)

	for attempt := 0; ; attempt++ {
		c, fresh, err := d.conn(ctx)
		if err != nil {
			return nil, err
		}
		r, class, err := d.exchangeOn(ctx, c, frame, *bp, q, mac)
		if err == nil {
			return r, nil
		}
		if d.life.Err() != nil {
			return nil, d.p.fail(ClassCanceled, fmt.Errorf("%w: %w", net.ErrClosed, err))
		}
		if class == ClassNetwork && connDead(c, err) {
			d.retire(c)
			if !fresh && attempt == 0 && ctx.Err() == nil {
				continue
			}
		}
		return nil, d.p.fail(class, err)
	}
}

// exchangeOn runs one query on its own stream of c; buf receives the
// reply.
func (d *DoQ) exchangeOn(ctx context.Context, c *quic.Conn, frame, buf []byte, q *dns.Msg, mac string) (*dns.Msg, Class, error) {
	before := c.ConnectionStats().PacketsReceived
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, quicClass(ctx, err), fmt.Errorf("open stream: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(aLongTimeAgo) })
	defer stop()
	fail := func(action string, err error) (*dns.Msg, Class, error) {
		st.CancelWrite(doqRequestCancelled)
		st.CancelRead(doqRequestCancelled)
		class := quicClass(ctx, err)
		if errors.Is(err, ErrMalformed) {
			class = ClassMalformed
		}
		if class == ClassTimeout && c.ConnectionStats().PacketsReceived == before {
			d.retire(c)
		}
		return nil, class, fmt.Errorf("%s: %w", action, err)
	}
	if _, err := st.Write(frame); err != nil {
		return fail("send query", err)
	}
	if err := st.Close(); err != nil { // STREAM FIN: no more queries here (§4.2)
		return fail("send query", err)
	}
	n, err := readFrame(st, buf)
	if err != nil {
		return fail("read reply", err)
	}
	st.CancelRead(quic.StreamErrorCode(doqNoError)) // one reply per stream; ignore the rest
	r, err := matchReply(buf[:n], 0, q)
	if err == nil {
		err = d.p.checkReply(buf[:n], r, mac)
	}
	if err != nil {
		return nil, ClassMalformed, fmt.Errorf("read reply: %w", err)
	}
	return r, ClassOK, nil
}

// conn returns the live connection, dialing one if there is none. fresh
// reports whether this call dialed it.
func (d *DoQ) conn(ctx context.Context) (c *quic.Conn, fresh bool, err error) {
	if c, err := d.current(); c != nil || err != nil {
		return c, false, err
	}
	done, err := d.p.dialTurn(ctx, d.life, d.dial)
	if err != nil {
		return nil, false, err
	}
	defer done()
	if c, err := d.current(); c != nil || err != nil {
		return c, false, err
	}

	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()
	c, err = d.qd.dial(dctx, d.tls, d.qconf)
	if err != nil {
		if d.life.Err() != nil {
			return nil, false, d.p.fail(ClassCanceled, net.ErrClosed)
		}
		return nil, false, d.p.fail(quicClass(ctx, err), err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.life.Err() != nil {
		c.CloseWithError(doqNoError, "")
		return nil, false, d.p.fail(ClassCanceled, net.ErrClosed)
	}
	d.cur = c
	d.conns[c] = struct{}{}
	context.AfterFunc(c.Context(), func() {
		d.mu.Lock()
		delete(d.conns, c)
		if d.cur == c {
			d.cur = nil
		}
		d.mu.Unlock()
	})
	return c, true, nil
}

// current returns the connection new queries use, or nil when there is
// none or it has died.
func (d *DoQ) current() (*quic.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.life.Err() != nil {
		return nil, d.p.fail(ClassCanceled, net.ErrClosed)
	}
	if d.cur != nil && d.cur.Context().Err() != nil {
		d.cur = nil
	}
	return d.cur, nil
}

// connDead reports whether err, from a stream of c, says that c as a whole
// has ended. quic-go fails the streams of a connection the peer closed
// before c.Context ends (the connection drains first, RFC 9000 §10.2.2),
// so the error type is checked too.
func connDead(c *quic.Conn, err error) bool {
	var (
		app   *quic.ApplicationError
		tr    *quic.TransportError
		idle  *quic.IdleTimeoutError
		reset *quic.StatelessResetError
	)
	return c.Context().Err() != nil || errors.As(err, &app) || errors.As(err, &tr) ||
		errors.As(err, &idle) || errors.As(err, &reset)
}

// retire stops giving c new queries. It stays open for the queries on it
// until the QUIC idle timeout ends it, or Close.
func (d *DoQ) retire(c *quic.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == c {
		d.cur = nil
	}
}

// Close closes every connection with DOQ_NO_ERROR (RFC 9250 §4.3), failing
// the queries on them and any later call to Exchange with net.ErrClosed
// (as ClassCanceled), and closes the socket. Close is idempotent.
func (d *DoQ) Close() error {
	d.stop()
	d.mu.Lock()
	conns := make([]*quic.Conn, 0, len(d.conns))
	for c := range d.conns {
		conns = append(conns, c)
	}
	d.cur = nil
	d.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(doqNoError, "")
	}
	return d.qd.close()
}
