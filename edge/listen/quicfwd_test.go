package listen

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/doqclient"
)

// readWithin reads one packet from s, failing after d.
func readWithin(t *testing.T, s net.PacketConn, d time.Duration) ([]byte, net.Addr) {
	t.Helper()
	type got struct {
		b   []byte
		a   net.Addr
		err error
	}
	ch := make(chan got, 1)
	go func() {
		b := make([]byte, 2048)
		n, a, err := s.ReadFrom(b)
		ch <- got{b[:n], a, err}
	}()
	select {
	case g := <-ch:
		if g.err != nil {
			t.Fatalf("read: %v", g.err)
		}
		return g.b, g.a
	case <-time.After(d):
		s.SetReadDeadline(time.Unix(1, 0))
		<-ch
		s.SetReadDeadline(time.Time{})
		t.Fatal("nothing read")
		return nil, nil
	}
}

// TestQUICSockForwarding: an old and a new process's view of one UDP
// socket on loopback. Once the old one forwards, the new one reads the
// packets opening connections and those of its own connections, with the
// client's address, and its replies leave from the shared socket; the
// old one keeps the rest. When the old one lets go, the new one reads
// the socket.
func TestQUICSockForwarding(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	oldR := NewQUICRouting(4, reg, testLogger(t))
	old := newQUICSock(pc, oldR, nil, nil)
	defer old.Close()
	dup, err := pc.File()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := old.pair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := NewInherited([]Socket{{Network: "udp4", Addr: "127.0.0.1:0", File: dup}, pair})
	defer in.Close()
	npc, err := in.inheritUDP("udp4", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	inPair, err := in.inheritPair("127.0.0.1:0")
	if err != nil || inPair == nil {
		t.Fatalf("pair not inherited: %v", err)
	}
	gate := make(chan struct{})
	newR := NewQUICRouting(oldR.Next(), nil, testLogger(t))
	nu := newQUICSock(npc, newR, gate, inPair)
	defer nu.Close()

	client, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	oldCID, newCID := mustCID(t, oldR.gen), mustCID(t, newR.gen)

	// Before Start everything is the old process's.
	initial := longPacket(quicV1, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	client.Write(initial)
	if b, _ := readWithin(t, old, 2*time.Second); string(b) != string(initial) {
		t.Fatalf("old read %x", b)
	}
	oldR.Start()
	go func() {
		// The old process's reader, as quic-go's: it keeps what is its.
		b := make([]byte, 2048)
		for {
			n, _, err := old.ReadFrom(b)
			if err != nil {
				return
			}
			if p := b[:n]; p[0]&0x80 != 0 || p[1] != oldR.gen.marker {
				t.Errorf("old process kept the new one's packet %x", p)
			}
		}
	}()
	for _, p := range [][]byte{initial, longPacket(quicV1, 2, newCID), shortPacket(newCID)} {
		client.Write(shortPacket(oldCID)) // the old process's: not forwarded
		client.Write(p)
		b, a := readWithin(t, nu, 2*time.Second)
		if string(b) != string(p) {
			t.Fatalf("new read %x, want %x", b, p)
		}
		if a.String() != client.LocalAddr().String() {
			t.Fatalf("forwarded from %v, want the client %v", a, client.LocalAddr())
		}
		if _, err := nu.WriteTo([]byte("reply"), a); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(2 * time.Second))
		rb := make([]byte, 64)
		n, from, err := client.ReadFrom(rb)
		if err != nil || string(rb[:n]) != "reply" || from.String() != pc.LocalAddr().String() {
			t.Fatalf("reply %q from %v (%v), want from %v", rb[:n], from, err, pc.LocalAddr())
		}
	}
	// The forwarder counts a packet once its send returned, which may be
	// after the new process has read and answered it.
	for deadline := time.Now().Add(2 * time.Second); testutil.ToFloat64(oldR.forwarded) < 3 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if n := testutil.ToFloat64(oldR.forwarded); n != 3 {
		t.Fatalf("forwarded %v packets, want 3", n)
	}
	// The old process exits: it stops forwarding and closes its socket;
	// the new one reads the socket once the gate opens.
	old.Close()
	close(gate)
	client.Write(shortPacket(oldCID))
	if b, _ := readWithin(t, nu, 2*time.Second); string(b) != string(shortPacket(oldCID)) {
		t.Fatalf("after the gate: read %x", b)
	}
}

// TestQUICSockTakeBack: when the new process is gone the old one stops
// forwarding (a send to a closed pair is a counted drop, not an error)
// and reads everything again.
func TestQUICSockTakeBack(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := NewQUICRouting(0, nil, testLogger(t))
	s := newQUICSock(pc, r, nil, nil)
	defer s.Close()
	pair, err := s.pair("x")
	if err != nil {
		t.Fatal(err)
	}
	pair.File.Close() // the new process died
	if r.Forwarding() {
		t.Fatal("forwarding before Start")
	}
	r.Start()
	if !r.Forwarding() {
		t.Fatal("not forwarding after Start")
	}
	client, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	initial := longPacket(quicV1, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	client.Write(initial)
	client.Write(shortPacket(mustCID(t, r.gen)))
	if b, _ := readWithin(t, s, 2*time.Second); b[0]&0x80 != 0 {
		t.Fatalf("read %x, want the old process's short packet", b)
	}
	if n := testutil.ToFloat64(r.dropped); n != 1 {
		t.Fatalf("dropped %v, want 1", n)
	}
	r.Stop()
	if r.Forwarding() || (*QUICRouting)(nil).Forwarding() {
		t.Fatal("forwarding after Stop, or without routing")
	}
	client.Write(initial)
	if b, _ := readWithin(t, s, 2*time.Second); string(b) != string(initial) {
		t.Fatalf("after Stop: read %x, want the Initial", b)
	}
}

// TestDoQHandOver: two DoQ listeners on one socket, as the old and the
// new process of an upgrade. Once the old one forwards, new connections
// are the new listener's while the old one's go on there; once the old
// one closes and the gate opens, the new one serves alone.
func TestDoQHandOver(t *testing.T) {
	answer := func(who string) pipeline.Handler {
		return pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
			m := new(dns.Msg)
			m.SetReply(req.Msg)
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "version.bind.", Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: []string{who}})
			return m, nil
		})
	}
	keys := &QUICKeys{}
	oldCfg := testConfig(t, fam4, answer("old"))
	oldCfg.QUIC = keys
	oldCfg.QUICRouting = NewQUICRouting(0, nil, testLogger(t))
	old := startDoQ(t, oldCfg)
	ask := func(c *doqclient.Client) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q := new(dns.Msg)
		q.SetQuestion("version.bind.", dns.TypeTXT)
		q.Question[0].Qclass = dns.ClassCHAOS
		q.Id = 0
		r, err := c.Exchange(ctx, q)
		if err != nil {
			return "", err
		}
		if len(r.Answer) != 1 {
			return "", errors.New("no answer")
		}
		return strings.Join(r.Answer[0].(*dns.TXT).Txt, ""), nil
	}
	must := func(c *doqclient.Client, want string) {
		t.Helper()
		got, err := ask(c)
		if err != nil || got != want {
			t.Fatalf("answered by %q (%v), want %q", got, err, want)
		}
	}
	c1 := old.dial(t, "dns.test")
	must(c1, "old")

	socks, err := old.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 2 || !IsQUICPair(socks[1]) {
		t.Fatalf("sockets %v, want the UDP socket and its pair", socks)
	}
	gate := make(chan struct{})
	newCfg := testConfig(t, fam4, answer("new"))
	newCfg.Addr = oldCfg.Addr
	newCfg.QUIC = keys
	newCfg.TLS = old.pki.server
	newCfg.Inherited = NewInherited(socks)
	newCfg.QUICGate = gate
	newCfg.QUICRouting = NewQUICRouting(oldCfg.QUICRouting.Next(), nil, testLogger(t))
	nl, err := ListenDoQ(newCfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, nl)
	if n := newCfg.Inherited.Len(); n != 0 {
		t.Fatalf("%d inherited sockets left", n)
	}
	oldCfg.QUICRouting.Start()

	for range 3 {
		c := old.dial(t, "dns.test") // the same address: the shared socket
		must(c, "new")
		must(c1, "old")
	}
	c2 := old.dial(t, "dns.test")
	must(c2, "new")
	// The old process exits; the new one reads the socket from then on.
	if err := old.DoQ.Close(); err != nil {
		t.Fatal(err)
	}
	close(gate)
	must(c2, "new")
	must(old.dial(t, "dns.test"), "new")
}
