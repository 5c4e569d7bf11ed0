package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

var _ Exchanger = (*TCP)(nil)

// TCPConfig tunes a TCP exchanger. The zero value of a field takes the
// default documented on it.
type TCPConfig struct {
	// IdleTimeout closes a connection with no query outstanding for this
	// long. Default 10s.
	IdleTimeout time.Duration
	// MaxInFlight bounds the queries outstanding on the exchanger, and so
	// on its one connection; further callers wait for a slot, within their
	// ctx. Default 512, at most 16384 so a free message ID is always quick
	// to find.
	MaxInFlight int
	// Now is the clock that decides whether an idle connection may still
	// be reused; time.Now when nil.
	Now func() time.Time
}

const maxTCPInFlight = 16384

// TCP exchanges queries with one upstream address over TCP, reusing one
// connection and pipelining queries on it (RFC 7766 §6.2.1.1). Writes are
// serialized; one reader goroutine per connection hands each reply to the
// caller waiting for its message ID, so replies may come in any order.
//
// Connection policy: new queries go to one connection, dialed lazily by
// the first query that needs it (concurrent callers wait for that dial
// rather than dialing their own). MaxInFlight caps outstanding queries;
// callers past it wait for a slot instead of opening a second connection.
// A connection with nothing outstanding is closed after IdleTimeout.
//
// A connection that breaks fails every query on it at once with
// ClassNetwork, and the next query dials afresh. A query that failed that
// way on a connection it did not dial itself is retried once on a new one:
// the server may have closed an idle connection just as the query was
// sent, and a DNS query is idempotent (HTTP/1.1 recovers the same way, RFC
// 2616 §8.1.4). When a query times out and nothing at all was read on its
// connection since it was sent, the connection is retired: new queries
// dial a new one, while the old one keeps its pending queries and closes
// once they are done, so a dead connection cannot swallow queries until
// the kernel gives up on it.
//
// A TCP is safe for concurrent use. Close stops everything it started.
type TCP struct {
	p pinnedAddr
	// connect opens a connection to p: a plain dial for TCP, dial and
	// TLS handshake for DoT.
	connect func(ctx context.Context) (net.Conn, error)
	pad     bool // pad queries (RFC 8467): set for DoT
	idle    time.Duration
	now     func() time.Time
	slots   chan struct{} // one token per outstanding query
	dial    chan struct{} // one token: one dial at a time

	life context.Context // canceled by Close
	stop context.CancelFunc
	wg   sync.WaitGroup // reader goroutines

	mu    sync.Mutex
	cur   *tcpConn              // the connection new queries use; nil until dialed
	conns map[*tcpConn]struct{} // every connection whose reader runs
}

// NewTCP returns a pipelining TCP (RFC 7766) exchanger for addr, pinned to
// addr's family ("tcp4" or "tcp6"; an IPv4-mapped address counts as IPv4).
// It dials nothing until the first query.
func NewTCP(addr netip.AddrPort, cfg TCPConfig) *TCP {
	p := pin(addr, "tcp")
	return newTCP(p, cfg, p.dialStream)
}

func newTCP(p pinnedAddr, cfg TCPConfig, connect func(context.Context) (net.Conn, error)) *TCP {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 512
	}
	cfg.MaxInFlight = min(cfg.MaxInFlight, maxTCPInFlight)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	life, stop := context.WithCancel(context.Background())
	return &TCP{
		p:       p,
		connect: connect,
		idle:    cfg.IdleTimeout,
		now:     cfg.Now,
		slots:   make(chan struct{}, cfg.MaxInFlight),
		dial:    make(chan struct{}, 1),
		life:    life,
		stop:    stop,
		conns:   make(map[*tcpConn]struct{}),
	}
}

// Exchange sends q and returns the matching reply, with q's ID. q is not
// modified. The ctx deadline bounds waiting for a slot, dialing, writing
// and waiting for the reply.
//
// A reply whose question does not match q fails the query with
// ClassMalformed at once (the ID, the only other key, is already spent).
// Errors: ClassNetwork when the dial fails or the connection breaks,
// ClassTimeout at the deadline, ClassCanceled when ctx is canceled or the
// exchanger is closed (wrapping net.ErrClosed).
func (t *TCP) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if ctx.Err() != nil {
		return nil, t.p.failCtx(ctx, nil)
	}
	select {
	case t.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, t.p.failCtx(ctx, fmt.Errorf("wait for a free slot: %w", ctx.Err()))
	case <-t.life.Done():
		return nil, t.p.fail(ClassCanceled, net.ErrClosed)
	}
	defer func() { <-t.slots }()

	bp := getMsgBuf()
	defer putMsgBuf(bp)
	m := upstreamQuery(q, dns.Id())
	if t.pad && t.p.signer == nil && m.IsTsig() == nil {
		padQuery(m)
	}
	wire, mac, err := t.p.packQuery(m, (*bp)[2:])
	if err != nil {
		return nil, t.p.fail(ClassCanceled, fmt.Errorf("pack query: %w", err))
	}
	if len(wire) > maxMsgSize {
		return nil, t.p.fail(ClassCanceled, fmt.Errorf("pack query: %d bytes, over %d", len(wire), maxMsgSize))
	}
	frame := (*bp)[:2+len(wire)]
	if &wire[0] != &frame[2] { // PackBuffer needed more room than buf, or signing
		frame = append(make([]byte, 2, 2+len(wire)), wire...)
	}
	binary.BigEndian.PutUint16(frame, uint16(len(wire)))

	for attempt := 0; ; attempt++ {
		c, fresh, err := t.conn(ctx)
		if err != nil {
			return nil, err
		}
		r, class, err := c.exchange(ctx, frame, q, mac)
		if err == nil {
			return r, nil
		}
		if class == ClassNetwork && !fresh && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return nil, t.p.fail(class, err)
	}
}

// conn returns the live connection, dialing one if there is none. fresh
// reports whether this call dialed it.
func (t *TCP) conn(ctx context.Context) (c *tcpConn, fresh bool, err error) {
	if c, err := t.current(); c != nil || err != nil {
		return c, false, err
	}
	done, err := t.p.dialTurn(ctx, t.life, t.dial)
	if err != nil {
		return nil, false, err
	}
	defer done()
	if c, err := t.current(); c != nil || err != nil {
		return c, false, err
	}

	// Close aborts a dial under way.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.life, cancel)()
	nc, err := t.connect(dctx)
	if err != nil {
		if t.life.Err() != nil {
			return nil, false, t.p.fail(ClassCanceled, net.ErrClosed)
		}
		return nil, false, t.p.failIO(ctx, err)
	}
	c = newTCPConn(t, nc)

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.life.Err() != nil {
		c.fail(errClosed)
		return nil, false, t.p.fail(ClassCanceled, net.ErrClosed)
	}
	t.cur = c
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	go c.readLoop()
	return c, true, nil
}

// current returns the live connection, or nil when there is none or it has
// been idle past IdleTimeout by the configured clock (it is then closed).
func (t *TCP) current() (*tcpConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.life.Err() != nil {
		return nil, t.p.fail(ClassCanceled, net.ErrClosed)
	}
	c := t.cur
	if c == nil {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !c.retired && len(c.pending) == 0 && t.now().Sub(c.idleSince) >= t.idle {
		c.failLocked(errIdle)
	}
	if c.err != nil || c.retired {
		t.cur = nil
		return nil, nil
	}
	return c, nil
}

// Close closes every connection, failing the queries on them and any
// later call to Exchange with net.ErrClosed (as ClassCanceled), and waits
// for the reader goroutines to end. Close is idempotent.
func (t *TCP) Close() error {
	t.stop()
	t.mu.Lock()
	conns := make([]*tcpConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.cur = nil
	t.mu.Unlock()
	for _, c := range conns {
		c.fail(errClosed)
	}
	t.wg.Wait()
	return nil
}

// forget runs when a connection's reader ends.
func (t *TCP) forget(c *tcpConn) {
	t.mu.Lock()
	delete(t.conns, c)
	if t.cur == c {
		t.cur = nil
	}
	t.mu.Unlock()
	t.wg.Done()
}
