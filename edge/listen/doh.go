package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/dnsedge/dnsedge/edge/listen/internal/h2"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// dohMaxWorkers bounds the workers a DoH listener keeps for its HTTP/2
// requests; beyond it a request gets a goroutine of its own.
const dohMaxWorkers = 512

// DoH serves DNS over HTTPS (RFC 8484) on Config.HTTPPath and
// Config.HTTPPath/{client-id}: GET with a base64url dns parameter, POST of
// an application/dns-message body, and the JSON API of Google and
// Cloudflare (doh_json.go). It speaks HTTP/2 and HTTP/1.1 over TLS, or
// cleartext HTTP/1.1 and HTTP/2 (h2c) behind a TLS-terminating proxy when
// Config.H2C is set, and also HTTP/3 on the same port when Config.HTTP3 is
// set.
//
// It bounds open connections (MaxConns, and MaxConnsPerClient per client
// address), streams per HTTP/2 or HTTP/3 connection (MaxQueriesPerConn),
// queries in flight (MaxConcurrent, beyond which it answers 503), the TLS
// handshake (HandshakeTimeout) and the time a request may take to arrive
// (ReadTimeout). Its methods are safe for concurrent use.
type DoH struct {
	*core
	addr  netip.AddrPort
	ln    *dohListener
	srv   *http.Server
	paths dohPaths
	// altSvc advertises HTTP/3; its value is "" without it.
	altSvc dohHeader

	// HTTP/3; all nil without Config.HTTP3.
	h3    *http3.Server
	udp   *net.UDPConn
	qs    *quicSock // nil: the HTTP/3 transport reads udp itself
	qtr   *quic.Transport
	qln   *dohQUICListener
	addr3 netip.AddrPort

	// HTTP/2 over TLS on our own server (doh_h2.go); nil in H2C mode.
	h2      *h2.Server
	workers *workers[*h2.Stream] // at most dohMaxWorkers
	h2wg    sync.WaitGroup       // h2.ServeConn

	serving   sync.WaitGroup // srv.Serve and h3.ServeListener
	errMu     sync.Mutex
	serveErrs []error
}

var _ interface {
	Serve() error
	Close() error
	Addr() netip.AddrPort
} = (*DoH)(nil)

// dohMaxHeaderBytes bounds the request line and headers of one HTTP/1.1
// request and the header list of an HTTP/2 or HTTP/3 one. A GET query of
// a long name fits several times over.
const dohMaxHeaderBytes = 8 << 10

// dohBindAttempts is how often ListenDoH tries, with port 0 and HTTP/3, to
// find a TCP port whose UDP twin is free too.
const dohBindAttempts = 8

// ListenDoH binds TCP on cfg.Addr, with the network ("tcp4" or "tcp6") of
// its family, and with cfg.HTTP3 UDP on the same address and port (the TCP
// port picked by the system when cfg.Addr has port 0). cfg.TLS is
// required unless cfg.H2C; it is cloned, with ALPN h2 and http/1.1 (h3 for
// HTTP/3) and at least TLS 1.2 (1.3 for QUIC). HTTP/3 needs TLS, so it
// cannot be combined with H2C. Connections made before Serve wait in the
// accept queue.
func ListenDoH(cfg Config) (*DoH, error) {
	cfg, err := cfg.withDefaults()
	if err == nil {
		switch {
		case cfg.TLS == nil && !cfg.H2C:
			err = errors.New("no TLS config (set one, or H2C behind a TLS proxy)")
		case cfg.HTTP3 && cfg.H2C:
			err = errors.New("HTTP/3 needs TLS and cannot be combined with H2C")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("doh listener: %w", err)
	}
	var (
		tcp       *net.TCPListener
		udp       *net.UDPConn
		inherited bool
	)
	if tcp, err = cfg.Inherited.inheritTCP(network("tcp", cfg.Addr.Addr()), cfg.Addr.String()); err == nil && tcp != nil && cfg.HTTP3 {
		at := unmap(tcp.Addr().(*net.TCPAddr).AddrPort())
		if udp, inherited, err = bindUDP(cfg.Inherited, cfg.Addr); err == nil && !inherited {
			// The UDP twin of an inherited port 0 is the TCP port.
			udp.Close()
			udp, err = net.ListenUDP(network("udp", at.Addr()), net.UDPAddrFromAddrPort(at))
		}
		if err != nil {
			tcp.Close()
			return nil, fmt.Errorf("listen on udp %s for http/3: %w", at, err)
		}
	} else if err == nil && tcp == nil {
		tcp, udp, err = bindDoH(cfg.Addr, cfg.HTTP3)
	}
	if err != nil {
		return nil, err
	}
	l := &DoH{
		core:  newCore(cfg, pipeline.KindDoH),
		addr:  unmap(tcp.Addr().(*net.TCPAddr).AddrPort()),
		paths: newDoHPaths(cfg.HTTPPath),
		udp:   udp,
	}
	l.log = l.log.With("addr", l.addr.String())
	if cfg.HTTP3 {
		l.altSvc = newDoHAltSvc(l.addr.Port())
	}
	if err := l.setupHTTP(tcp); err != nil {
		tcp.Close()
		if udp != nil {
			udp.Close()
		}
		return nil, err
	}
	if udp != nil {
		l.addr3 = unmap(udp.LocalAddr().(*net.UDPAddr).AddrPort())
		qpc, qs, err := cfg.quicConn(udp, inherited)
		if err == nil {
			l.qs = qs
			err = l.setupHTTP3(qpc)
		}
		if err != nil {
			tcp.Close()
			l.closeUDP()
			return nil, err
		}
	}
	return l, nil
}

// bindDoH binds TCP on addr and, when h3, UDP on the same IP and port.
func bindDoH(addr netip.AddrPort, h3 bool) (*net.TCPListener, *net.UDPConn, error) {
	var lc net.ListenConfig
	for attempt := 1; ; attempt++ {
		ln, err := lc.Listen(context.Background(), network("tcp", addr.Addr()), addr.String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen on tcp %s: %w", addr, err)
		}
		tcp := ln.(*net.TCPListener)
		if !h3 {
			return tcp, nil, nil
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		at := netip.AddrPortFrom(addr.Addr(), uint16(port))
		pc, err := lc.ListenPacket(context.Background(), network("udp", addr.Addr()), at.String())
		if err == nil {
			return tcp, pc.(*net.UDPConn), nil
		}
		tcp.Close()
		if addr.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == dohBindAttempts {
			return nil, nil, fmt.Errorf("listen on udp %s for http/3: %w", at, err)
		}
	}
}

// setupHTTP builds the HTTP/1.1 and HTTP/2 server over tcp.
//
// Connections that negotiate "h2" over TLS are served by the listener's
// own HTTP/2 server (doh_h2.go), which costs a third of what net/http's
// does per request; net/http serves HTTP/1.1 over TLS. In H2C mode
// net/http serves cleartext HTTP/1.1, and HTTP/2 (prior knowledge and
// Upgrade) through golang.org/x/net/http2.
func (l *DoH) setupHTTP(tcp *net.TCPListener) error {
	cfg := l.cfg
	var h http.Handler = http.HandlerFunc(l.serveHTTP)
	l.srv = &http.Server{
		ReadHeaderTimeout: cfg.ReadTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    dohMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		// OPTIONS * is not a DoH request; it gets a 404 like other paths.
		DisableGeneralOptionsHandler: true,
	}
	var p http.Protocols
	p.SetHTTP1(true)
	l.srv.Protocols = &p
	var tlsConf *tls.Config
	if cfg.H2C {
		// Prior knowledge is recognised by net/http and handed to the
		// HTTP/2 server; h2c.NewHandler adds the HTTP/1.1 Upgrade.
		p.SetUnencryptedHTTP2(true)
		h2 := &http2.Server{
			MaxConcurrentStreams: uint32(min(cfg.MaxQueriesPerConn, 1<<31-1)),
			IdleTimeout:          cfg.IdleTimeout,
			// A DoH message is at most 64 KiB; no need for large windows.
			MaxUploadBufferPerStream: 1 << 17,
		}
		l.srv.Handler = h2c.NewHandler(h, h2)
		if err := http2.ConfigureServer(l.srv, h2); err != nil {
			return fmt.Errorf("configure http/2: %w", err)
		}
	} else {
		tlsConf = serverTLS(cfg.TLS, http2.NextProtoTLS, "http/1.1")
		// Only the ACME TLS-ALPN-01 challenge may add a protocol.
		tlsConf.NextProtos = slices.DeleteFunc(tlsConf.NextProtos, func(p string) bool {
			return p != http2.NextProtoTLS && p != "http/1.1" && p != acmeALPN
		})
		l.srv.TLSConfig = tlsConf
		l.srv.Handler = h
	}
	l.ln = newDoHListener(l.core, tcp, tlsConf)
	if tlsConf != nil {
		l.setupH2()
	}
	return nil
}

// setupHTTP3 builds the HTTP/3 server over l.udp. Only handshaken
// connections are served: no 0-RTT, so nothing can be replayed.
func (l *DoH) setupHTTP3(pc net.PacketConn) error {
	cfg := l.cfg
	tlsConf := cfg.TLS.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	tlsConf.NextProtos = []string{http3.NextProtoH3}
	qconf := &quic.Config{
		HandshakeIdleTimeout: cfg.HandshakeTimeout,
		MaxIdleTimeout:       cfg.IdleTimeout,
		MaxIncomingStreams:   int64(cfg.MaxQueriesPerConn),
		// Only the control and QPACK streams of the client.
		MaxIncomingUniStreams: 8,
	}
	l.qtr = cfg.QUICRouting.transport(cfg.QUIC.transport(&quic.Transport{Conn: pc}))
	qln, err := l.qtr.Listen(tlsConf, l.quicLimits(qconf))
	if err != nil {
		l.qtr.Close()
		return fmt.Errorf("listen on quic %s: %w", l.addr3, err)
	}
	l.qln = &dohQUICListener{Listener: qln, limit: l.ln.limit}
	l.h3 = &http3.Server{
		Handler:        http.HandlerFunc(l.serveHTTP),
		MaxHeaderBytes: dohMaxHeaderBytes,
		IdleTimeout:    cfg.IdleTimeout,
		Logger:         l.log,
	}
	return nil
}

// SetLimits makes lim the limits of the running listener (see limits.go
// for when each applies); zero values take the defaults. It refuses
// negative values, changing nothing. Safe for concurrent use.
func (l *DoH) SetLimits(lim Limits) error {
	cur, err := l.storeLimits(lim)
	if l.h2 != nil {
		l.h2.SetLimits(h2Limits(cur, l.cfg.WriteTimeout))
	}
	return err
}

// Addr returns the TCP address the listener is bound to, with the port
// the system picked when Config.Addr had port 0.
func (l *DoH) Addr() netip.AddrPort { return l.addr }

// Addr3 returns the UDP address HTTP/3 is served on: the same as Addr when
// Config.HTTP3 is set, invalid otherwise.
func (l *DoH) Addr3() netip.AddrPort { return l.addr3 }

// Serve serves HTTP until Close, then returns nil. It returns ErrClosed at
// once when the listener is already closed.
func (l *DoH) Serve() error {
	err := l.beginServe(func() {
		l.ln.start()
		l.serving.Go(func() { l.keep(l.srv.Serve(l.ln), http.ErrServerClosed) })
		if l.h3 != nil {
			l.serving.Go(func() { l.keep(l.h3.ServeListener(l.qln), http.ErrServerClosed, quic.ErrServerClosed) })
		}
	})
	if err != nil {
		return err
	}
	l.serving.Wait()
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return errors.Join(l.serveErrs...)
}

// keep records err for Serve unless it is one of the errors closing
// brings.
func (l *DoH) keep(err error, expected ...error) {
	if err == nil || l.isClosed() || errors.Is(err, net.ErrClosed) {
		return
	}
	for _, e := range expected {
		if errors.Is(err, e) {
			return
		}
	}
	l.errMu.Lock()
	l.serveErrs = append(l.serveErrs, err)
	l.errMu.Unlock()
}

// Sockets returns duplicates of the listener's TCP socket and, with
// HTTP/3, its UDP socket, for the process that replaces this one.
func (l *DoH) Sockets() ([]Socket, error) {
	a := l.cfg.Addr.String()
	fs := []func() (Socket, error){func() (Socket, error) { return fileOf(l.ln.tcp, network("tcp", l.cfg.Addr.Addr()), a, 0) }}
	socks, err := collect(fs...)
	if err != nil || l.udp == nil {
		return socks, err
	}
	q, err := quicSockets(l.udp, l.qs, network("udp", l.cfg.Addr.Addr()), a)
	if err != nil {
		for _, s := range socks {
			s.File.Close()
		}
		return nil, err
	}
	return append(socks, q...), nil
}

// closeUDP closes the HTTP/3 socket, with the wrapper quic-go reads.
func (l *DoH) closeUDP() error {
	if l.qs != nil {
		return l.qs.Close()
	}
	return l.udp.Close()
}

// Drain stops accepting connections (the sockets stay open in the
// processes that hold them), sends GOAWAY on HTTP/2 and HTTP/3, and lets
// the open connections finish their streams and close, within timeout;
// then it closes like Close.
func (l *DoH) Drain(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l.ln.Close()
	var shut sync.WaitGroup
	shut.Go(func() { l.srv.Shutdown(ctx) })
	if l.h3 != nil {
		shut.Go(func() { l.h3.Shutdown(ctx) })
	}
	if l.h2 != nil {
		l.h2.ShutdownGraceful()
		shut.Go(l.h2wg.Wait)
	}
	done := make(chan struct{})
	go func() { shut.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return l.Close()
}

// Close stops accepting connections and tells clients to go away (HTTP/2
// and HTTP/3 GOAWAY), answers the queries in flight (waiting at most
// QueryTimeout and a short grace), then closes every connection. A query
// that arrives once Close has begun may still be answered, or its
// connection may close under it. Calling Close again does nothing.
func (l *DoH) Close() error {
	if !l.beginClose() {
		return nil
	}
	queryTimeout := l.limits().QueryTimeout
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout+drainGrace)
	defer cancel()
	errs := []error{l.ln.Close()}
	var shut sync.WaitGroup
	shut.Go(func() { l.srv.Shutdown(ctx) })
	if l.h3 != nil {
		shut.Go(func() { l.h3.Shutdown(ctx) })
	}
	if l.h2 != nil {
		l.h2.Shutdown()
	}
	l.drain(queryTimeout)
	// The replies of the last queries are being written; idle clients
	// need not close their connections first.
	done := make(chan struct{})
	go func() { shut.Wait(); l.h2wg.Wait(); close(done) }()
	t := time.NewTimer(drainGrace)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	cancel()
	shut.Wait()
	if err := l.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, fmt.Errorf("close http server: %w", err))
	}
	l.ln.closeAll()
	<-done
	if l.workers != nil {
		l.workers.wait()
	}
	if l.h3 != nil {
		l.h3.Close()
		errs = append(errs, l.qln.Close(), l.qtr.Close())
		// While this process hands its sockets over, the new process's
		// packets keep reaching it through this one until it exits.
		if l.qs == nil || !l.qs.handOver() {
			errs = append(errs, l.closeUDP())
		}
	}
	l.serving.Wait()
	for i, err := range errs {
		if errors.Is(err, net.ErrClosed) || errors.Is(err, quic.ErrServerClosed) {
			errs[i] = nil
		}
	}
	return errors.Join(errs...)
}

// dohPaths matches request paths: base, or base/{client-id}.
type dohPaths struct {
	base   string // Config.HTTPPath
	prefix string // base with one trailing slash
}

func newDoHPaths(base string) dohPaths {
	return dohPaths{base: base, prefix: strings.TrimSuffix(base, "/") + "/"}
}

// match returns the client id the path carries ("" for base), ok false
// when the path is not a DoH path or its id is not valid.
func (p dohPaths) match(path string) (id string, ok bool) {
	if path == p.base {
		return "", true
	}
	if len(path) <= len(p.prefix) || path[:len(p.prefix)] != p.prefix {
		return "", false
	}
	id = path[len(p.prefix):]
	return id, ValidClientID(id)
}
