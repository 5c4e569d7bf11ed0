package listen

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseSocketKey(t *testing.T) {
	tests := []struct {
		key  string
		ok   bool
		want Socket
	}{
		{"udp4 127.0.0.1:53 1", true, Socket{Network: "udp4", Addr: "127.0.0.1:53", Index: 1}},
		{"tcp6 [::1]:853 0", true, Socket{Network: "tcp6", Addr: "[::1]:853"}},
		{"unix /run/dnsedge/control.sock 0", true, Socket{Network: "unix", Addr: "/run/dnsedge/control.sock"}},
		{"udp4 127.0.0.1:53", false, Socket{}},
		{"sctp 127.0.0.1:53 0", false, Socket{}},
		{"udp4 127.0.0.1:53 -1", false, Socket{}},
		{"udp4 127.0.0.1:53 x", false, Socket{}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			n, a, i, err := ParseSocketKey(tt.key)
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok %v", err, tt.ok)
			}
			if got := (Socket{Network: n, Addr: a, Index: i}); tt.ok && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if tt.ok && tt.want.Key() != tt.key {
				t.Fatalf("Key() = %q, want %q", tt.want.Key(), tt.key)
			}
		})
	}
}

func FuzzParseSocketKey(f *testing.F) {
	f.Add("udp4 127.0.0.1:53 0")
	f.Add("unix /x 3")
	f.Fuzz(func(t *testing.T, key string) {
		n, a, i, err := ParseSocketKey(key)
		if err != nil {
			return
		}
		if _, _, _, err := ParseSocketKey(SocketKey(n, a, i)); err != nil {
			t.Fatalf("key %q parsed, its rebuilt key does not: %v", key, err)
		}
	})
}

// TestUDPInheritsSockets: a UDP listener built on the sockets another
// handed over serves on the same address and socket group, binds the
// sockets a larger count adds, and a datagram queued while nobody read is
// answered by it.
func TestUDPInheritsSockets(t *testing.T) {
	h := &fakeHandler{t: t, serve: answerA}
	cfg := testConfig(t, fam4, h)
	cfg.Sockets = 2
	old, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	socks, err := old.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 2 {
		t.Fatalf("%d sockets handed over, want 2", len(socks))
	}
	addr := old.Addr()
	if err := old.Close(); err != nil { // the handed-over copies keep the sockets
		t.Fatal(err)
	}
	// A query sent while no listener reads waits in a socket's queue.
	c, err := net.Dial("udp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wire, _ := query("example.org.", dns.TypeA).Pack()
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	in := NewInherited(socks)
	cfg.Inherited, cfg.Sockets = in, 3
	l, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	if l.Addr() != addr || len(l.socks) != 3 || in.Len() != 0 {
		t.Fatalf("listener on %v with %d sockets (%d left), want %v with 3", l.Addr(), len(l.socks), in.Len(), addr)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("the queued query: %v", err)
	}
	for range 20 {
		if _, err := exchange("udp", addr, query("example.org.", dns.TypeA), time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTCPDrain: Drain stops accepting, while the listener that took the
// socket over accepts, and serves a connection opened before until its
// client closes it.
func TestTCPDrain(t *testing.T) {
	h := &fakeHandler{t: t, serve: answerA}
	cfg := testConfig(t, fam4, h)
	old, err := ListenTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- old.Serve() }()
	open, err := net.Dial("tcp4", old.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := query("example.org.", dns.TypeA).Pack()
	if _, err := tcpRoundTrip(open, wire); err != nil {
		t.Fatal(err)
	}
	socks, err := old.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Inherited = NewInherited(socks)
	next, err := ListenTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, next)
	drained := make(chan error, 1)
	go func() { drained <- old.Drain(10 * time.Second) }()
	// The open connection is still served while the old listener drains.
	for range 5 {
		if _, err := tcpRoundTrip(open, wire); err != nil {
			t.Fatalf("open connection while draining: %v", err)
		}
	}
	// New connections reach the listener that took the socket.
	for range 5 {
		if _, err := exchange("tcp", next.Addr(), query("example.org.", dns.TypeA), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("drain ended with a connection open: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	open.Close()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end when the connection closed")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestDoHDrainHTTP3: an HTTP/3 connection that is idle when Drain sends
// GOAWAY is closed then (by its client, quic-go's), so Drain returns long
// before its timeout.
func TestDoHDrainHTTP3(t *testing.T) {
	pki := testTLS(t)
	cfg := dohTestConfig(t, fam4, &fakeHandler{t: t, serve: answerA}, pki)
	cfg.HTTP3 = true
	l := startDoH(t, cfg)
	c := newDoHClient(t, "h3", l, pki.roots)
	dohDNSReply(t, c.get(t, "/dns-query", query("example.org.", dns.TypeA)))
	drained := make(chan error, 1)
	go func() { drained <- l.Drain(time.Hour) }()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain still waiting for an idle HTTP/3 connection")
	}
}

// TestQUICSockGate: reads wait for the gate; a read deadline in the past (how
// quic-go stops its reader) and Close end the wait.
func TestQUICSockGate(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	open := make(chan struct{})
	g := newQUICSock(pc, nil, open, nil)
	defer g.Close()
	c, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("queued"))
	got := make(chan error, 1)
	go func() {
		_, _, err := g.ReadFrom(make([]byte, 64))
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("read before the gate opened: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.SetReadDeadline(time.Unix(1, 0))
	if err := <-got; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a past deadline: %v, want a timeout", err)
	}
	g.SetReadDeadline(time.Time{})
	close(open)
	b := make([]byte, 64)
	n, _, err := g.ReadFrom(b)
	if err != nil || string(b[:n]) != "queued" {
		t.Fatalf("read after the gate opened: %q, %v", b[:n], err)
	}
}
