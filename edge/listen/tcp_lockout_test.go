package listen

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTCPLockout opens 1,000 idle connections from one address as fast
// as it can, then checks that TCP queries from another address are all
// answered: with the default limits (the per-client cap), and with a
// per-client cap above MaxConns (the headroom kept for clients that hold
// no connection, and the eviction of the heaviest client's idle
// connections).
func TestTCPLockout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		lim       Limits
		maxHeld   int    // connections the attacker may hold at most
		dropLabel string // the drop reason the attacker meets
	}{
		{name: "default limits", maxHeld: DefaultMaxConnsPerClient, dropLabel: "client_limit"},
		{name: "per-client cap above the total", lim: Limits{MaxConns: 200, MaxConnsPerClient: 5000},
			maxHeld: 200, dropLabel: "client_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
			cfg.Limits, cfg.Metrics = tt.lim, NewMetrics(reg)
			s := start(t, "tcp", cfg)
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(loop1, 0))}
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			begin := time.Now()
			for range 1000 {
				c, err := d.Dial("tcp", s.Addr().String())
				if err != nil {
					t.Fatalf("attacker dial: %v", err)
				}
				conns = append(conns, c)
			}
			t.Logf("1000 connections opened in %v", time.Since(begin))
			// The other client: queries on fresh connections, as after a
			// truncated UDP answer, and several on one connection.
			q := query("example.org.", dns.TypeA)
			for i := range 20 {
				r, err := exchangeFrom("tcp", loop2, s.Addr(), q, 2*time.Second)
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("other client's query %d: %v %v", i, r, err)
				}
			}
			// How many of the attacker's connections the server still
			// holds: those it closed read EOF at once.
			// A first pass finds the candidates; a closed connection
			// whose FIN is still on its way (the race detector slows the
			// server down) is given 200ms more, all candidates at once.
			var maybe []net.Conn
			buf := make([]byte, 1)
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(buf); isTimeout(err) {
					maybe = append(maybe, c)
				}
			}
			var held atomic.Int32
			var wg sync.WaitGroup
			until := time.Now().Add(200 * time.Millisecond)
			for _, c := range maybe {
				wg.Go(func() {
					c.SetReadDeadline(until)
					if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
						held.Add(1)
					}
				})
			}
			wg.Wait()
			alive := int(held.Load())
			t.Logf("attacker holds %d connections", alive)
			if alive > tt.maxHeld {
				t.Errorf("attacker holds %d connections, want at most %d", alive, tt.maxHeld)
			}
			if got := metricValue(t, reg, "dnsedge_listener_dropped_total", map[string]string{"listener": "tcp", "reason": tt.dropLabel}); got == 0 {
				t.Errorf("no %s drop counted", tt.dropLabel)
			}
		})
	}
}

// TestTCPEvictHeaviest fills a listener with idle connections from two
// clients and checks that a third client's connection closes an idle one
// of the client holding the most.
func TestTCPEvictHeaviest(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
	cfg.Limits = Limits{MaxConns: 32, MaxConnsPerClient: 100}
	cfg.Metrics = NewMetrics(reg)
	s := start(t, "tcp", cfg).(*TCP)
	heavy, light := loop1, netip.MustParseAddr("127.0.0.3")
	dial := func(src netip.Addr) net.Conn {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// 2 light, then heavy up to the headroom line (30 of 32).
	for range 2 {
		dial(light)
	}
	for range 28 {
		dial(heavy)
	}
	waitConns := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.connMu.Lock()
			n := len(s.conns)
			s.connMu.Unlock()
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections open, want %d", n, want)
			}
			time.Sleep(time.Millisecond) // polling the server's count, not a timeout
		}
	}
	waitConns(30)
	// A new client takes the headroom: 30 → 32.
	dial(netip.MustParseAddr("127.0.0.4"))
	dial(netip.MustParseAddr("127.0.0.5"))
	waitConns(32)
	// Full: another newcomer closes one of heavy's idle connections.
	c := dial(netip.MustParseAddr("127.0.0.6"))
	r, err := tcpRoundTrip(c, mustPack(t, query("example.org.", dns.TypeA)))
	if err != nil || len(r) == 0 {
		t.Fatalf("newcomer's query at the cap: %v", err)
	}
	if got := metricValue(t, reg, "dnsedge_listener_dropped_total", map[string]string{"listener": "tcp", "reason": "evicted"}); got != 1 {
		t.Errorf("evicted = %v, want 1", got)
	}
	s.connMu.Lock()
	h, l := s.perIP[heavy], s.perIP[light]
	s.connMu.Unlock()
	if h != 27 || l != 2 {
		t.Errorf("heavy holds %d, light %d; want 27 and 2", h, l)
	}
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
