package transporttest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
)

// StartDoH starts a DNS over HTTPS (RFC 8484) server answering POSTs of
// application/dns-message at cfg.Path, over HTTP/2 on TLS (ALPN "h2"), or
// over HTTP/3 on UDP when cfg.HTTP3 is set. Concurrent requests on one
// connection are answered concurrently. It is serving when StartDoH
// returns, and stops at t's cleanup.
func StartDoH(t testing.TB, cfg ServerConfig) *EncryptedServer {
	t.Helper()
	s := newEncrypted(t, &cfg)
	if cfg.Path == "" {
		cfg.Path = "/dns-query"
	}
	mux := http.NewServeMux()
	h := cfg.HTTP
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { s.serveDoH(w, r, cfg.Handler) }
	}
	mux.HandleFunc(cfg.Path, h)
	if cfg.HTTP3 {
		startH3(t, s, &cfg, mux)
	} else {
		startH2(t, s, &cfg, mux)
	}
	t.Cleanup(s.Stop)
	return s
}

func startH2(t testing.TB, s *EncryptedServer, cfg *ServerConfig, mux http.Handler) {
	t.Helper()
	ln, err := net.ListenTCP(network("tcp", cfg.Addr), net.TCPAddrFromAddrPort(cfg.Addr))
	if err != nil {
		bindFailed(t, cfg.Addr, err)
	}
	s.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	conf := cfg.CA.serverTLS([]string{"h2"}, &s.c)
	srv := &http.Server{
		Handler:   mux,
		TLSConfig: conf,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.c.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0), // handshake failures are expected in tests
	}
	if err := http2.ConfigureServer(srv, &http2.Server{MaxConcurrentStreams: 1000}); err != nil {
		ln.Close()
		t.Fatalf("start doh server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(tls.NewListener(ln, conf))
	}()
	s.stop = func() {
		srv.Close()
		<-done
	}
}

func startH3(t testing.TB, s *EncryptedServer, cfg *ServerConfig, mux http.Handler) {
	t.Helper()
	uc, err := net.ListenUDP(network("udp", cfg.Addr), net.UDPAddrFromAddrPort(cfg.Addr))
	if err != nil {
		bindFailed(t, cfg.Addr, err)
	}
	s.addr = uc.LocalAddr().(*net.UDPAddr).AddrPort()
	// Listen before returning, so the server is serving (and its
	// goroutines exist) when StartDoH returns.
	tr := &quic.Transport{Conn: uc}
	ln, err := tr.ListenEarly(cfg.CA.serverTLS([]string{http3.NextProtoH3}, &s.c), &quic.Config{MaxIncomingStreams: 1000})
	if err != nil {
		uc.Close()
		t.Fatalf("start doh server: %v", err)
	}
	srv := &http3.Server{
		Handler: mux,
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
			s.c.conns.Add(1)
			return ctx
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.ServeListener(ln) })
	s.stop = func() {
		srv.Close()
		ln.Close()
		tr.Close()
		uc.Close()
		wg.Wait()
	}
}

// serveDoH answers one RFC 8484 POST with h.
func (s *EncryptedServer) serveDoH(w http.ResponseWriter, r *http.Request, h Handler) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/dns-message" {
		http.Error(w, "want a POST of application/dns-message", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, dns.MaxMsgSize+1))
	if err != nil {
		return
	}
	q := new(dns.Msg)
	if err := q.Unpack(body); err != nil || len(body) > dns.MaxMsgSize {
		http.Error(w, "bad dns message", http.StatusBadRequest)
		return
	}
	reply := s.answer(h, q)
	if reply == nil {
		<-r.Context().Done() // never answer: the client times out
		return
	}
	out, err := reply.Pack()
	if err != nil {
		http.Error(w, errors.Join(errors.New("pack reply"), err).Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	w.Write(out)
}
