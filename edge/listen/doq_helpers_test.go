package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/internal/doqclient"
)

// doqServer is a DoQ listener under test and the PKI it serves.
type doqServer struct {
	*DoQ
	pki testPKI
}

// startDoQ binds a DoQ listener for cfg with a fresh test PKI and serves
// it until the test ends.
func startDoQ(t testing.TB, cfg Config) doqServer {
	t.Helper()
	pki := testTLS(t)
	cfg.TLS = pki.server
	l, err := ListenDoQ(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	return doqServer{l, pki}
}

// dial connects a doqclient with the given SNI; it is closed when the
// test ends.
func (s doqServer) dial(t testing.TB, sni string) *doqclient.Client {
	t.Helper()
	c, err := s.tryDial(sni)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s doqServer) tryDial(sni string) (*doqclient.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return doqclient.Dial(ctx, s.Addr().String(), doqclient.Config{TLS: s.pki.clientTLS(sni)})
}

// doqFrame returns m packed with its DoQ length prefix; m's ID is kept.
func doqFrame(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return frameOf(wire)
}

// rawExchange sends frame on a new stream of c, ends the stream, and
// returns the raw reply message (without its prefix).
func rawExchange(c *quic.Conn, frame []byte, timeout time.Duration) ([]byte, error) {
	s, err := c.OpenStream()
	if err != nil {
		return nil, err
	}
	s.SetDeadline(time.Now().Add(timeout))
	if _, err := s.Write(frame); err != nil {
		return nil, err
	}
	s.Close()
	var hdr [2]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(s, b); err != nil {
		return nil, err
	}
	return b, nil
}

// closedWith waits up to timeout for c to be closed and returns the DoQ
// code the server closed it with, or -1 with the cause otherwise.
func closedWith(c *quic.Conn, timeout time.Duration) (int64, error) {
	select {
	case <-c.Context().Done():
	case <-time.After(timeout):
		return -1, errors.New("connection still open")
	}
	cause := context.Cause(c.Context())
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.Remote {
		return int64(ae.ErrorCode), cause
	}
	return -1, cause
}

// streamResetCode returns the code of the stream reset err reports, or -1.
func streamResetCode(err error) int64 {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return int64(se.ErrorCode)
	}
	return -1
}

// doqGoroutines counts the goroutines running the listener's code for
// connections and streams.
func doqGoroutines() (streams, conns int) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		switch {
		case strings.Contains(g, "listen.(*DoQ).serveStream"):
			streams++
		case strings.Contains(g, "listen.(*DoQ).serveConn"), strings.Contains(g, "listen.(*DoQ).watchUni"):
			conns++
		}
	}
	return streams, conns
}

// eventually polls cond every 10ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// udpProxy relays the datagrams of one client to a server, and can delay
// or drop them, to show what a client does to the listener at the packet
// level.
type udpProxy struct {
	front *net.UDPConn // the client talks to this
	back  *net.UDPConn // connected to the server

	client atomic.Pointer[net.UDPAddr]
	// dropHandshake drops the client datagrams that carry a Handshake or
	// a 1-RTT packet, so that the client's Finished never arrives.
	dropHandshake atomic.Bool
	// delayToClient delays every server datagram by this many ns.
	delayToClient atomic.Int64
	// retries counts the QUIC Retry packets the server sent.
	retries atomic.Int32

	wg sync.WaitGroup
}

func newUDPProxy(t testing.TB, server string) *udpProxy {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	raddr, _ := net.ResolveUDPAddr("udp4", server)
	back, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{front: front, back: back}
	later := make(chan delayed, 1024)
	p.wg.Go(func() { p.toServer() })
	p.wg.Go(func() { p.toClient(later) })
	p.wg.Go(func() { p.deliver(later) })
	t.Cleanup(func() {
		front.Close()
		back.Close()
		p.wg.Wait()
	})
	return p
}

type delayed struct {
	b   []byte
	due time.Time
}

func (p *udpProxy) addr() string { return p.front.LocalAddr().String() }

func (p *udpProxy) toServer() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.client.Store(from)
		if p.dropHandshake.Load() && !initialOnly(buf[:n]) {
			continue
		}
		p.back.Write(buf[:n])
	}
}

func (p *udpProxy) toClient(later chan<- delayed) {
	defer close(later)
	buf := make([]byte, 65536)
	for {
		n, err := p.back.Read(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		if n > 0 && b[0]&0x80 != 0 && (b[0]&0x30)>>4 == 3 {
			p.retries.Add(1) // a long header of type Retry (RFC 9000 §17.2.5)
		}
		select {
		case later <- delayed{b, time.Now().Add(time.Duration(p.delayToClient.Load()))}:
		default: // a lost datagram
		}
	}
}

// initialOnly reports whether datagram b holds only QUIC v1 Initial and
// 0-RTT packets (RFC 9000 §17.2), which a client sends before its
// Finished.
func initialOnly(b []byte) bool {
	for len(b) > 0 {
		if b[0]&0x80 == 0 || (b[0]&0x30)>>4 >= 2 {
			return false // a short header (1-RTT), Handshake or Retry packet
		}
		initial := (b[0]&0x30)>>4 == 0
		i := 5        // first byte and version
		for range 2 { // destination and source connection IDs
			if i >= len(b) {
				return false
			}
			i += 1 + int(b[i])
		}
		if initial {
			n, k := varint(b, i)
			i += k + n
		}
		n, k := varint(b, i)
		if k == 0 || i+k+n > len(b) {
			return false
		}
		b = b[i+k+n:]
	}
	return true
}

// varint decodes the QUIC variable-length integer at b[i:] and returns it
// with its length, which is 0 when b is too short.
func varint(b []byte, i int) (int, int) {
	if i >= len(b) {
		return 0, 0
	}
	k := 1 << (b[i] >> 6)
	if i+k > len(b) {
		return 0, 0
	}
	v := int(b[i] & 0x3f)
	for j := 1; j < k; j++ {
		v = v<<8 | int(b[i+j])
	}
	return v, k
}

func (p *udpProxy) deliver(later <-chan delayed) {
	for d := range later {
		time.Sleep(time.Until(d.due))
		if c := p.client.Load(); c != nil {
			p.front.WriteToUDP(d.b, c)
		}
	}
}

// notifyCache is a TLS session cache that reports when a ticket is stored.
type notifyCache struct {
	tls.ClientSessionCache
	stored chan struct{}
}

func (c *notifyCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.stored <- struct{}{}:
		default:
		}
	}
}
