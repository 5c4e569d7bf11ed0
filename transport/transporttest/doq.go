package transporttest

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// StartDoQ starts a DNS over dedicated QUIC (RFC 9250) server: ALPN "doq";
// on each bidirectional stream it reads one length-prefixed query, answers
// it from the handler, and ends the stream (FIN). Streams are served
// concurrently, up to 1000 per connection. It is serving when StartDoQ
// returns, and stops at t's cleanup, closing connections with
// DOQ_NO_ERROR.
func StartDoQ(t testing.TB, cfg ServerConfig) *EncryptedServer {
	t.Helper()
	s := newEncrypted(t, &cfg)
	uc, err := net.ListenUDP(network("udp", cfg.Addr), net.UDPAddrFromAddrPort(cfg.Addr))
	if err != nil {
		bindFailed(t, cfg.Addr, err)
	}
	s.addr = uc.LocalAddr().(*net.UDPAddr).AddrPort()
	tr := &quic.Transport{Conn: uc}
	ln, err := tr.Listen(cfg.CA.serverTLS([]string{"doq"}, &s.c), &quic.Config{MaxIncomingStreams: 1000})
	if err != nil {
		uc.Close()
		t.Fatalf("start doq server: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[*quic.Conn]struct{})
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept(s.ctx)
			if err != nil {
				return
			}
			s.c.conns.Add(1)
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				s.serveDoQConn(c, cfg.Handler, &wg)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	s.stop = func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.CloseWithError(0, "") // DOQ_NO_ERROR
		}
		mu.Unlock()
		tr.Close()
		uc.Close()
		wg.Wait()
	}
	t.Cleanup(s.Stop)
	return s
}

// serveDoQConn serves the streams of c until c ends; Stop ends it with
// CONNECTION_CLOSE, so clients see the server go.
func (s *EncryptedServer) serveDoQConn(c *quic.Conn, h Handler, wg *sync.WaitGroup) {
	for {
		st, err := c.AcceptStream(c.Context())
		if err != nil {
			return
		}
		wg.Go(func() { s.serveDoQStream(st, h) })
	}
}

func (s *EncryptedServer) serveDoQStream(st *quic.Stream, h Handler) {
	var hdr [2]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		st.CancelRead(0x2) // DOQ_PROTOCOL_ERROR
		st.CancelWrite(0x2)
		return
	}
	buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(st, buf); err != nil {
		st.CancelWrite(0x2)
		return
	}
	q := new(dns.Msg)
	if q.Unpack(buf) != nil {
		st.CancelWrite(0x2)
		return
	}
	r := s.answer(h, q)
	if r == nil {
		<-st.Context().Done() // never answer; the stream ends with the connection
		return
	}
	out, err := r.Pack()
	if err != nil {
		st.CancelWrite(0x1) // DOQ_INTERNAL_ERROR
		return
	}
	st.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
	st.Close()
}
