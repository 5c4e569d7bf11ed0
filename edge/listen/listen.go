// Package listen accepts DNS queries from clients and owns the wire: it
// reads and checks messages, builds one pipeline.Request per query, runs
// the current pipeline, and writes the finished reply (respond.go).
//
// Every listener bounds the queries it serves at once, serves them
// concurrently, each under recover(), and on Close stops reading, lets
// in-flight queries finish within their budget, then closes its sockets.
package listen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Config is shared by every listener. Zero durations and counts take the
// documented defaults.
type Config struct {
	// Addr is where to listen. Port 0 picks a free port; Addr() reports it.
	Addr netip.AddrPort
	// Handler returns the current pipeline (the caller loads it from an
	// atomic pointer). It is called once per query and must not return nil.
	Handler func() pipeline.Handler
	// Logger receives the listener's logs; nil discards them.
	Logger *slog.Logger
	// Metrics records what the listener sees; nil records nothing.
	Metrics *Metrics
	// Limits bound the work of the listener; SetLimits changes them on a
	// running listener.
	Limits

	// WriteTimeout is how long writing one reply may take on a stream
	// transport; a client that stops reading is disconnected after it.
	// Default 5s.
	WriteTimeout time.Duration

	// TLS is the server configuration of the encrypted listeners (DoT,
	// DoH, DoQ), which require it (DoH in H2C mode excepted); UDP and TCP
	// ignore it. Listeners clone it and set their own ALPN (NextProtos)
	// and minimum version: TLS 1.2 on DoT and DoH over TCP, TLS 1.3 on
	// QUIC, which requires it. Certificates should come from
	// GetCertificate or Certificates: a GetConfigForClient's config would
	// replace the listener's ALPN.
	TLS *tls.Config
	// ServerName is the name clients reach an encrypted listener by. A
	// TLS SNI of the form {id}.ServerName gives the query the client id
	// {id} (DoT, DoQ); empty means SNI gives no client id.
	ServerName string
	// QUIC holds the keys of the QUIC transports of DoQ and DoH over
	// HTTP/3; nil gives each transport keys of its own (and no stateless
	// resets). See QUICKeys.
	QUIC *QUICKeys
	// HandshakeTimeout bounds a TLS (or QUIC) handshake, so clients that
	// open connections and stall cannot pile up. Default 5s.
	HandshakeTimeout time.Duration
	// Padding pads replies (RFC 7830) to a multiple of the RFC 8467 block
	// size when the query carried EDNS. On by default for encrypted
	// listeners: NoPadding turns it off.
	NoPadding bool
	// RequireTSIG marks every query of the listener as one that must be
	// signed (pipeline.Request.RequireTSIG): the TSIG stage refuses the
	// unsigned ones.
	RequireTSIG bool

	// HTTPPath is where a DoH listener answers (RFC 8484 §6), and
	// HTTPPath/{client-id} too. Default "/dns-query".
	HTTPPath string
	// H2C makes a DoH listener speak cleartext HTTP/1.1 and HTTP/2 (for
	// use behind a TLS-terminating proxy) instead of TLS. Off by default.
	H2C bool
	// HTTP3 also serves DoH over HTTP/3 (QUIC) on the same port and
	// advertises it with Alt-Svc.
	HTTP3 bool

	// ACL are the client prefixes the listener serves; other clients get
	// REFUSED. nil means: every client on encrypted listeners (DoT, DoH,
	// DoQ), which cannot amplify, and the Private ranges on plain ones
	// (UDP, TCP, DoH over h2c), so that a listener on a public address is
	// never an open resolver. {0.0.0.0/0, ::/0} serves everybody.
	ACL []netip.Prefix
	// Private is the ACL of plain listeners without one; nil means
	// PrivateRanges.
	Private []netip.Prefix
	// RateLimiter limits the queries of each client; nil limits none. One
	// limiter is shared by the listeners of a server and kept across
	// reloads.
	RateLimiter *RateLimiter

	// Sockets is the number of UDP sockets bound to Addr with SO_REUSEPORT,
	// each with its own reader. Default runtime.NumCPU(). Ignored by TCP.
	Sockets int

	// Inherited are the sockets handed over by the process this one
	// replaces; the listener takes those of Addr instead of binding, and
	// binds only what they lack. nil binds everything.
	Inherited *Inherited
	// QUICGate, when set, holds back the reading of inherited QUIC
	// sockets (DoQ, DoH over HTTP/3) until it is closed: until the
	// process that handed them over has stopped reading them; until
	// then they read what that process forwards (see QUICRouting).
	QUICGate <-chan struct{}
	// QUICRouting, when set, gives the QUIC listeners this process's
	// connection IDs and forwards packets to the process replacing this
	// one. nil forwards nothing.
	QUICRouting *QUICRouting
}

// Defaults of Config.
const (
	DefaultQueryTimeout      = 4 * time.Second
	DefaultMaxConcurrent     = 10000
	DefaultIdleTimeout       = 10 * time.Second
	DefaultReadTimeout       = 2 * time.Second
	DefaultWriteTimeout      = 5 * time.Second
	DefaultMaxConns          = 1000
	DefaultMaxQueriesPerConn = 100
	DefaultMaxConnsPerClient = 64
	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultHTTPPath          = "/dns-query"
)

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if !c.Addr.IsValid() {
		errs = append(errs, fmt.Errorf("listen address %v is not valid", c.Addr))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("no handler"))
	}
	var err error
	c.Limits, err = c.Limits.withDefaults()
	errs = append(errs, err)
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"write timeout", &c.WriteTimeout, DefaultWriteTimeout},
		{"handshake timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
	} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"sockets", &c.Sockets, runtime.NumCPU()},
	} {
		switch {
		case *n.v < 0:
			errs = append(errs, fmt.Errorf("%s %d is negative", n.name, *n.v))
		case *n.v == 0:
			*n.v = n.def
		}
	}
	if c.HTTPPath == "" {
		c.HTTPPath = DefaultHTTPPath
	}
	if c.HTTPPath[0] != '/' {
		errs = append(errs, fmt.Errorf("http path %q does not start with /", c.HTTPPath))
	}
	for _, p := range append(c.ACL[:len(c.ACL):len(c.ACL)], c.Private...) {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("acl prefix %v is not valid", p))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Addr = netip.AddrPortFrom(c.Addr.Addr().Unmap(), c.Addr.Port())
	return c, errors.Join(errs...)
}

// network returns the Go network pinned to the family of a, e.g. "udp4".
func network(base string, a netip.Addr) string {
	if a.Is4() {
		return base + "4"
	}
	return base + "6"
}

// ErrClosed is returned by Serve when the listener was closed before Serve
// was called. It matches net.ErrClosed with errors.Is.
var ErrClosed = fmt.Errorf("listener closed: %w", net.ErrClosed)

// core is what every listener shares: its configuration, metrics and the
// count of queries in flight.
type core struct {
	cfg  Config // as opened; its Limits are those of the first generation
	lim  atomic.Pointer[Limits]
	kind pipeline.Kind
	log  *slog.Logger
	m    *kindMetrics

	pad bool // pad replies (RFC 8467) on this listener

	acl *ACL         // clients served; nil: all
	rl  *RateLimiter // nil: no limit

	flight  flight        // queries being served
	drained chan struct{} // closed when Close is done waiting for them

	mu    sync.Mutex
	state int           // stateNew, stateServing or stateClosed, under mu
	done  chan struct{} // closed when Close starts
}

const (
	stateNew = iota
	stateServing
	stateClosed
)

func newCore(cfg Config, kind pipeline.Kind) *core {
	c := &core{
		cfg:     cfg,
		kind:    kind,
		pad:     kind.Encrypted() && !cfg.NoPadding,
		log:     cfg.Logger.With("listener", kind.String()),
		m:       cfg.Metrics.kind(kind),
		flight:  newFlight(),
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.lim.Store(&cfg.Limits)
	var err error
	if c.acl, err = listenerACL(cfg, kind.Encrypted() && !cfg.H2C); err != nil {
		// Config.withDefaults checked the prefixes; should it still
		// fail, the listener serves nobody rather than everybody.
		c.log.Error("acl", "err", err)
		c.acl, _ = NewACL(nil)
	}
	c.rl = cfg.RateLimiter
	return c
}

// limits returns the current limits; they are read-only.
func (c *core) limits() *Limits { return c.lim.Load() }

// storeLimits makes lim, its zero values defaulted, the current limits,
// and returns them. A negative value is refused with an error, and the
// limits stay as they were.
func (c *core) storeLimits(lim Limits) (*Limits, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		c.log.Error("limits not changed", "err", err)
		return c.limits(), err
	}
	c.lim.Store(&lim)
	return &lim, nil
}

// tryAcquire claims a slot for one query, false when MaxConcurrent are in
// flight. Each successful call is paired with release.
func (c *core) tryAcquire() bool {
	if c.flight.add() > int64(c.limits().MaxConcurrent) {
		c.flight.done()
		return false
	}
	return true
}

func (c *core) release() { c.flight.done() }

// drainGrace is how long Close still waits, once the query budget has
// passed, for the replies of the stragglers to be written.
const drainGrace = 250 * time.Millisecond

// drain waits until no query is in flight, at most timeout plus
// drainGrace. No query may start once drain is called. Queries are not
// canceled: any that began before Close has seen its own deadline pass by
// the time drain gives up, since its budget is timeout.
func (c *core) drain(timeout time.Duration) {
	t := time.NewTimer(timeout + drainGrace)
	defer t.Stop()
	if !c.flight.wait(t.C, nil) {
		c.log.Warn("queries still in flight at close", "count", c.flight.n.Load())
	}
	close(c.drained)
}

// flight counts work in progress and lets one waiter wait for its end.
type flight struct {
	n       atomic.Int64
	waiting atomic.Bool
	zero    chan struct{} // capacity 1
}

func newFlight() flight { return flight{zero: make(chan struct{}, 1)} }

func (f *flight) add() int64 { return f.n.Add(1) }

func (f *flight) done() {
	if f.n.Add(-1) == 0 && f.waiting.Load() {
		select {
		case f.zero <- struct{}{}:
		default:
		}
	}
}

// wait returns true once nothing is in flight, false if timer or stop
// fires first (a nil channel never does). Callers make sure no add
// follows; only one goroutine waits.
func (f *flight) wait(timer <-chan time.Time, stop <-chan struct{}) bool {
	f.waiting.Store(true)
	if f.n.Load() == 0 {
		return true
	}
	select {
	case <-f.zero:
		return true
	case <-timer:
		return false
	case <-stop:
		return false
	}
}

// beginServe runs start, which starts the listener's goroutines, unless
// Serve was called before or the listener is closed. Close waits for what
// start began, so start runs under the same lock as beginClose.
func (c *core) beginServe(start func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateServing:
		return errors.New("serve called twice")
	case stateClosed:
		return ErrClosed
	}
	c.state = stateServing
	start()
	return nil
}

// beginClose marks the listener closed, false when it already was.
func (c *core) beginClose() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return false
	}
	c.state = stateClosed
	close(c.done)
	return true
}

// isClosed tells whether Close has started.
func (c *core) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// errInternal and errNoAnswer are answered SERVFAIL; their text is what
// the client sees in the EDE EXTRA-TEXT, so it says nothing about
// internals.
var (
	errInternal = &pipeline.Error{Text: "internal error"}
	errNoAnswer = &pipeline.Error{Text: "no answer"}
)

// call runs the current pipeline for req within the query budget and sets
// req.Outcome.Latency when it returns. A client the listener's ACL or the
// rate limiter turns away gets their answer instead (see guard). A panic in the handler is logged
// with its stack and answered like an error.
func (c *core) call(req *pipeline.Request) (m *dns.Msg, err error) {
	return c.callHooked(req, waitHook{})
}

// callHooked is call with h told when the query is about to wait (see
// budget).
func (c *core) callHooked(req *pipeline.Request, h waitHook) (m *dns.Msg, err error) {
	r, rc := c.guard(req)
	if r != nil {
		return r, nil
	}
	defer rc.done()
	req.RequireTSIG = c.cfg.RequireTSIG
	// No parent to cancel it: drain needs no cancellation (see there).
	// The budget runs from when the query was read: the client's own
	// timer started before the query waited for a worker.
	start := req.Received
	if start.IsZero() {
		start = time.Now()
	}
	ctx := newBudget(start.Add(c.limits().QueryTimeout), h)
	defer ctx.end()
	defer func() {
		if r := recover(); r != nil {
			c.m.panicked()
			c.log.Error("panic serving query", "panic", r, "client", req.Client.String(),
				"question", question(req), "stack", string(debug.Stack()))
			m, err = nil, errInternal
		}
	}()
	m, err = c.cfg.Handler().ServeDNS(ctx, req)
	req.Outcome.Latency = time.Since(req.Received)
	c.m.served(req, err)
	return m, err
}

// requests recycles the requests of the UDP, stream, DoH and DoQ listeners: a
// request is about 600 bytes, most of what a cache hit allocates, and
// nothing keeps one after answer returns (a stage whose work outlives the
// query, such as a background refresh or a canary sample, copies it; see
// pipeline.Request.Detach). A request is handed out as it was put back;
// the listener overwrites it whole.
var requests = sync.Pool{New: func() any { return new(pipeline.Request) }}

func getRequest() *pipeline.Request { return requests.Get().(*pipeline.Request) }

// putRequest gives req back once the reply is packed. It drops what req
// points to, so that a request waiting in the pool keeps no message or
// connection alive.
func putRequest(req *pipeline.Request) {
	*req = pipeline.Request{}
	requests.Put(req)
}

// answer serves req and packs the finished reply after off free bytes of a
// pooled buffer. It returns the packed reply and the buffer to give back
// to putBuf, or nil when nothing is to be sent.
func (c *core) answer(req *pipeline.Request, off int) ([]byte, *[]byte) {
	return c.answerHooked(req, off, waitHook{})
}

// answerHooked is answer with h told when the query is about to wait.
func (c *core) answerHooked(req *pipeline.Request, off int, h waitHook) ([]byte, *[]byte) {
	m, err := c.callHooked(req, h)
	if err == nil {
		if b, buf := c.answerCached(req, m, off); b != nil {
			return b, buf
		}
	}
	rb := getReplyBuf()
	defer putReplyBuf(rb)
	reply, send := finish(req, m, err, c.log, rb)
	if !send {
		c.m.drop(reasonHandler)
		return nil, nil
	}
	if c.pad {
		reply = padded(reply)
	}
	// Most replies fit 4 KiB; a larger one moves to a buffer of its size.
	buf := getBufFor(off + min(req.MaxSize, replyGuess))
	b, err := packReply(req, reply, (*buf)[off:])
	if errors.Is(err, errTooLong) && !relayed(req, reply) {
		// Too long for the client: the answer that sends it to TCP.
		truncated(reply, req.Msg.IsEdns0(), rb)
		if c.pad {
			reply = padded(reply)
		}
		b, err = packReply(req, reply, (*buf)[off:])
	}
	if err != nil {
		c.log.Error("bad reply from handler", "err", err, "question", question(req))
		*rb = replyBuf{}
		reply, _ = finish(req, nil, errInternal, c.log, rb)
		if b, err = packReply(req, reply, (*buf)[off:]); err != nil {
			putBuf(buf)
			c.log.Error("pack error reply", "err", err, "question", question(req))
			return nil, nil
		}
	}
	c.m.response(reply.Rcode, reply.Truncated)
	buf, b = inBuf(buf, off, b)
	return b, buf
}

// replyGuess is the reply size answer packs into first.
const replyGuess = 4096

// inBuf returns b as (*buf)[off:off+len(b)], copying it there when the
// packer had to allocate, so that a length prefix can go right before it;
// when b does not fit there, buf is given back and b goes into a pooled
// buffer that holds it, which is returned.
func inBuf(buf *[]byte, off int, b []byte) (*[]byte, []byte) {
	dst := (*buf)[off:]
	if len(b) > 0 && &b[0] != &dst[0] {
		if off+len(b) > len(*buf) {
			putBuf(buf)
			buf = getBufFor(off + len(b))
			dst = (*buf)[off:]
		}
		b = dst[:copy(dst, b)]
	}
	return buf, b
}
