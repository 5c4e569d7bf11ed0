package pebbletest

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// startDNS serves Zone on UDP 127.0.0.1 until the returned function is
// called: A queries get 127.0.0.1, other types in the zone an empty
// answer, names outside it NXDOMAIN. It returns the server's address.
func startDNS(t testing.TB) (string, func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start pebble's dns server: %v", err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	srv := &dns.Server{
		PacketConn:        pc,
		NotifyStartedFunc: func() { close(started) },
		Handler:           dns.HandlerFunc(answer),
	}
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	stop := func() {
		_ = srv.Shutdown()
		<-done
	}
	return pc.LocalAddr().String(), stop
}

// answer is the DNS server's handler.
func answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		switch {
		case !dns.IsSubDomain(Zone, q.Name):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IPv4(127, 0, 0, 1),
			})
		}
	}
	_ = w.WriteMsg(m)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
