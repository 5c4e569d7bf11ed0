package transporttest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Handler answers one query that arrived on an encrypted test server. It
// returns the reply, or nil to send nothing, so the client times out. ctx
// ends when the server stops, so a handler that waits must watch it.
type Handler func(ctx context.Context, q *dns.Msg) *dns.Msg

// Answer is the default Handler: it answers every query with one A
// record, 192.0.2.1, keeping the query's ID.
func Answer(_ context.Context, q *dns.Msg) *dns.Msg {
	m := new(dns.Msg).SetReply(q)
	if len(q.Question) > 0 {
		rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.1")
		m.Answer = append(m.Answer, rr)
	}
	return m
}

// ServerConfig configures StartDoT, StartDoH and StartDoQ. The zero value
// serves Answer on 127.0.0.1 on a free port under a fresh CA.
type ServerConfig struct {
	// Addr is where to listen. Default 127.0.0.1:0; the port of a stopped
	// server restarts it there. An IPv6 address that cannot be bound
	// skips the test, unless E2E_REQUIRED=1.
	Addr netip.AddrPort
	// CA signs the server certificate; NewCA(t) when nil.
	CA *CA
	// Handler answers queries; Answer when nil.
	Handler Handler
	// Path is the DoH path served (StartDoH only); "/dns-query" when empty.
	Path string
	// HTTP3 serves DoH over HTTP/3 on UDP instead of HTTP/2 (StartDoH
	// only).
	HTTP3 bool
	// HTTP, when set, replaces the DoH handler (StartDoH only): for
	// tests of wrong statuses, content types and bodies.
	HTTP http.HandlerFunc
}

// Stats counts what an encrypted test server saw.
type Stats struct {
	Conns      int64 // connections accepted
	Handshakes int64 // TLS handshakes completed, full or resumed
	Resumed    int64 // handshakes that resumed a session
	Queries    int64 // queries handed to the handler
}

type counters struct {
	conns, handshakes, resumed, queries atomic.Int64
}

// EncryptedServer is a DoT, DoH or DoQ test server on one loopback address.
// Its methods are safe for concurrent use.
type EncryptedServer struct {
	// CA signed the server's certificate.
	CA *CA

	addr   netip.AddrPort
	c      counters
	ctx    context.Context // handed to handlers; canceled by Stop
	cancel context.CancelFunc
	stop   func() // closes the sockets and waits
	once   sync.Once
}

// Addr returns the address the server listens on.
func (s *EncryptedServer) Addr() netip.AddrPort { return s.addr }

// Stats returns the counts so far.
func (s *EncryptedServer) Stats() Stats {
	return Stats{Conns: s.c.conns.Load(), Handshakes: s.c.handshakes.Load(), Resumed: s.c.resumed.Load(), Queries: s.c.queries.Load()}
}

// Stop closes the listener and every connection, cancels waiting
// handlers and waits for the server's goroutines. It is idempotent and
// runs at cleanup.
func (s *EncryptedServer) Stop() {
	s.once.Do(func() {
		s.cancel()
		s.stop()
	})
}

func newEncrypted(t testing.TB, cfg *ServerConfig) *EncryptedServer {
	t.Helper()
	if !cfg.Addr.IsValid() {
		cfg.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
	}
	if cfg.CA == nil {
		cfg.CA = NewCA(t)
	}
	if cfg.Handler == nil {
		cfg.Handler = Answer
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &EncryptedServer{CA: cfg.CA, ctx: ctx, cancel: cancel}
}

// answer runs the handler on q and counts it.
func (s *EncryptedServer) answer(h Handler, q *dns.Msg) *dns.Msg {
	s.c.queries.Add(1)
	return h(s.ctx, q)
}

// bindFailed fails t for an address that cannot be bound, or skips it when
// the address is IPv6 and E2E_REQUIRED=1 is not set.
func bindFailed(t testing.TB, addr netip.AddrPort, err error) {
	t.Helper()
	if addr.Addr().Is6() && os.Getenv("E2E_REQUIRED") != "1" {
		t.Skipf("cannot bind %s: %v", addr, err)
	}
	t.Fatalf("bind %s: %v", addr, err)
}

func network(proto string, a netip.AddrPort) string {
	if a.Addr().Is6() && !a.Addr().Is4In6() {
		return proto + "6"
	}
	return proto + "4"
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// StartDoT starts a DNS over TLS (RFC 7858) server: miekg/dns over TLS on
// TCP, ALPN "dot", answering pipelined queries on a connection in order.
// It is serving when StartDoT returns, and stops at t's cleanup.
func StartDoT(t testing.TB, cfg ServerConfig) *EncryptedServer {
	t.Helper()
	s := newEncrypted(t, &cfg)
	ln, err := net.ListenTCP(network("tcp", cfg.Addr), net.TCPAddrFromAddrPort(cfg.Addr))
	if err != nil {
		bindFailed(t, cfg.Addr, err)
	}
	s.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	tl := tls.NewListener(countingListener{ln, &s.c.conns}, cfg.CA.serverTLS([]string{"dot"}, &s.c))
	started := make(chan struct{})
	srv := &dns.Server{
		Net:               "tcp-tls",
		Listener:          tl,
		MaxTCPQueries:     -1,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			if r := s.answer(cfg.Handler, q); r != nil {
				w.WriteMsg(r)
			}
		}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("start dot server: %v", err)
	}
	s.stop = func() {
		srv.Shutdown()
		<-done
	}
	t.Cleanup(s.Stop)
	return s
}
