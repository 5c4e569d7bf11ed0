package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

var _ Exchanger = (*DoH)(nil)

// dohMediaType is the DoH message media type (RFC 8484 §6).
const dohMediaType = "application/dns-message"

// DoHConfig configures a DoH exchanger. The zero value of a field takes
// the default documented on it.
type DoHConfig struct {
	// TLS is the base client configuration; it must carry a ServerName
	// (ClientTLSConfig builds one), which is also the request's host. It
	// is cloned, not kept. Required.
	TLS *tls.Config
	// Path is the path of the DoH URI template. Default "/dns-query".
	Path string
	// HTTP3 sends queries over HTTP/3 (QUIC) instead of HTTP/2.
	HTTP3 bool
	// IdleTimeout closes a connection with no request for this long.
	// Default 30s.
	IdleTimeout time.Duration
}

// DoH exchanges queries with one upstream address over DNS over HTTPS
// (RFC 8484): a POST of the message (ID 0, §4.1) as application/dns-message
// over HTTP/2 (or HTTP/3), on connections that go to that one address only,
// whatever the URL's host resolves to. HTTP/2 multiplexes the concurrent
// queries on one connection and keeps it for the next ones.
//
// A DoH is safe for concurrent use. Close cancels the requests under way
// and closes every connection.
type DoH struct {
	p   pinnedAddr
	url *url.URL
	rt  http.RoundTripper

	life context.Context // canceled by Close
	stop context.CancelFunc
	once sync.Once
	// closeAll closes the transport's connections.
	closeAll func() error

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // HTTP/2 connections, closed by Close
}

// NewDoH returns a DoH exchanger for addr (an IPv4-mapped address counts as
// IPv4). HTTP/2 connections are dialed over "tcp4" or "tcp6" and offer
// ALPN "h2"; HTTP/3 ones use a UDP socket of addr's family and ALPN "h3".
// It dials nothing until the first query.
func NewDoH(addr netip.AddrPort, cfg DoHConfig) (*DoH, error) {
	alpn := "h2"
	if cfg.HTTP3 {
		alpn = http3.NextProtoH3
	}
	conf, err := exchangerTLS(cfg.TLS, alpn)
	if err != nil {
		return nil, fmt.Errorf("new doh exchanger for %s: %w", addr, err)
	}
	if cfg.Path == "" {
		cfg.Path = "/dns-query"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	host := conf.ServerName
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	if addr.Port() != 443 {
		host += ":" + strconv.Itoa(int(addr.Port()))
	}
	u, err := url.Parse("https://" + host + cfg.Path)
	if err != nil || u.Host != host || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("new doh exchanger for %s: bad url https://%s%s: %v", addr, host, cfg.Path, err)
	}
	life, stop := context.WithCancel(context.Background())
	d := &DoH{p: pin(addr, "tcp"), url: u, life: life, stop: stop, conns: make(map[net.Conn]struct{})}
	if cfg.HTTP3 {
		d.p = pin(addr, "udp")
		qd := &quicDialer{p: d.p}
		h3 := &http3.Transport{
			TLSClientConfig: conf,
			QUICConfig:      &quic.Config{MaxIdleTimeout: cfg.IdleTimeout},
			Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return qd.dial(ctx, tc, qc)
			},
		}
		d.rt = h3
		d.closeAll = func() error { return errors.Join(h3.Close(), qd.close()) }
		return d, nil
	}
	h2 := &http2.Transport{
		TLSClientConfig: conf,
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return d.dialH2(ctx, conf)
		},
		IdleConnTimeout: cfg.IdleTimeout,
		// Ping a connection that has been silent this long and drop it if
		// the ping goes unanswered, so a dead one is not kept.
		ReadIdleTimeout: 15 * time.Second,
		PingTimeout:     5 * time.Second,
	}
	d.rt = h2
	d.closeAll = func() error {
		h2.CloseIdleConnections()
		d.mu.Lock()
		defer d.mu.Unlock()
		for c := range d.conns {
			c.Close()
		}
		return nil
	}
	return d, nil
}

// dialH2 dials the pinned address, completes the handshake and checks
// that the server speaks HTTP/2.
func (d *DoH) dialH2(ctx context.Context, conf *tls.Config) (net.Conn, error) {
	c, err := dialTLS(ctx, d.p, conf)
	if err != nil {
		return nil, err
	}
	if proto := c.(*tlsConn).ConnectionState().NegotiatedProtocol; proto != "h2" {
		c.Close()
		return nil, fmt.Errorf("tls handshake with %s: server negotiated %q, not h2", conf.ServerName, proto)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	d.conns[c] = struct{}{}
	return &trackedConn{Conn: c, forget: func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
	}}, nil
}

// trackedConn leaves the DoH's connection set when closed.
type trackedConn struct {
	net.Conn
	once   sync.Once
	forget func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.forget)
	return c.Conn.Close()
}

// ConnectionState lets HTTP/2 see the TLS state of the connection.
func (c *trackedConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(*tlsConn).ConnectionState()
}

// Exchange sends q and returns the matching reply, with q's ID. q is not
// modified. The Meta that ctx carries (WithQueryMeta), if any, goes in
// request headers: X-DNS-Tag once per tag, X-DNS-TraceID, and a W3C
// traceparent when the trace id has its form. The ctx deadline bounds the dial, the request and reading
// the body.
//
// Errors: ClassTimeout at the deadline; ClassNetwork when the connection
// cannot be made (refused, reset, failed handshake, certificate
// verification failure, a server without HTTP/2) or breaks, and for HTTP
// status 5xx and 429, which say the server cannot answer now (a path
// failure like a refused connection); ClassMalformed for any other status
// than 200 (a 4xx means the server does not take our request: a wrong path
// or a server that is not DoH), a content type other than
// application/dns-message, a body over 65535 bytes, or a reply that does
// not parse or match; ClassCanceled when ctx is canceled or the exchanger
// is closed (wrapping net.ErrClosed).
func (d *DoH) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if ctx.Err() != nil {
		return nil, d.p.failCtx(ctx, nil)
	}
	if d.life.Err() != nil {
		return nil, d.p.fail(ClassCanceled, net.ErrClosed)
	}
	m := upstreamQuery(q, 0)
	if d.p.signer == nil && m.IsTsig() == nil {
		padQuery(m)
	}
	wire, mac, err := d.p.packQuery(m, nil)
	if err != nil {
		return nil, d.p.fail(ClassCanceled, fmt.Errorf("pack query: %w", err))
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.life, cancel)()
	hdr := http.Header{"Content-Type": {dohMediaType}, "Accept": {dohMediaType}}
	metaHeaders(hdr, QueryMeta(ctx))
	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           d.url,
		Host:          d.url.Host,
		Header:        hdr,
		Body:          io.NopCloser(bytes.NewReader(wire)),
		ContentLength: int64(len(wire)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(wire)), nil },
	}).WithContext(rctx)
	resp, err := d.rt.RoundTrip(req)
	if err != nil {
		return nil, d.failIO(ctx, fmt.Errorf("post query: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		class := ClassMalformed
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			class = ClassNetwork
		}
		return nil, d.p.fail(class, fmt.Errorf("post query: http status %s", resp.Status))
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != dohMediaType {
		return nil, d.p.fail(ClassMalformed, fmt.Errorf("%w: content type %q, want %s", ErrMalformed, resp.Header.Get("Content-Type"), dohMediaType))
	}
	bp := getMsgBuf()
	defer putMsgBuf(bp)
	n, err := io.ReadFull(resp.Body, (*bp)[:maxMsgSize])
	switch {
	case err == nil:
		var one [1]byte
		if k, _ := io.ReadFull(resp.Body, one[:]); k > 0 {
			return nil, d.p.fail(ClassMalformed, fmt.Errorf("%w: body over %d bytes", ErrMalformed, maxMsgSize))
		}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
	default:
		return nil, d.failIO(ctx, fmt.Errorf("read reply: %w", err))
	}
	r, err := matchReply((*bp)[:n], 0, q)
	if err == nil {
		err = d.p.checkReply((*bp)[:n], r, mac)
	}
	if err != nil {
		return nil, d.p.fail(ClassMalformed, fmt.Errorf("read reply: %w", err))
	}
	return r, nil
}

// failIO classes a transport error: canceled by Close, by the caller, a
// timeout, or the network's.
func (d *DoH) failIO(ctx context.Context, err error) error {
	if d.life.Err() != nil && ctx.Err() == nil {
		return d.p.fail(ClassCanceled, fmt.Errorf("%w: %w", net.ErrClosed, err))
	}
	return d.p.failIO(ctx, err)
}

// Close cancels the requests under way, failing them with net.ErrClosed
// (as ClassCanceled), as it does any later call to Exchange, and closes
// every connection. Close is idempotent.
func (d *DoH) Close() error {
	var err error
	d.once.Do(func() {
		d.stop()
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		err = d.closeAll()
	})
	return err
}
