package listen

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// exchangeFrom is exchange with the client socket bound to src.
func exchangeFrom(netw string, src netip.Addr, addr netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	if netw == "udp" {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	} else {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	c, err := d.Dial(netw, addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var b []byte
	if netw == "udp" {
		if _, err := c.Write(wire); err != nil {
			return nil, err
		}
		buf := make([]byte, dns.MaxMsgSize)
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		b = buf[:n]
	} else if b, err = tcpRoundTrip(c, wire); err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, err
	}
	return r, nil
}

var (
	loop1 = netip.MustParseAddr("127.0.0.1")
	loop2 = netip.MustParseAddr("127.0.0.2") // "public" where a test says so
)

// TestACL checks which clients a plain listener serves: without an acl
// only the private ranges (here 127.0.0.1 alone is private, so 127.0.0.2
// stands for an internet client), with one exactly its prefixes.
func TestACL(t *testing.T) {
	t.Parallel()
	only1 := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name    string
		acl     []netip.Prefix
		private []netip.Prefix
		src     netip.Addr
		refused bool
	}{
		{name: "no acl: private client served", private: only1, src: loop1},
		{name: "no acl: public client refused", private: only1, src: loop2, refused: true},
		{name: "no acl, default private ranges: loopback served", src: loop2},
		{name: "acl allows", acl: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, private: only1, src: loop2},
		{name: "acl refuses a private client", acl: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, private: only1, src: loop1, refused: true},
		{name: "open acl", acl: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, private: only1, src: loop2},
	}
	for _, kind := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(kind+" "+tt.name, func(t *testing.T) {
				t.Parallel()
				reg := prometheus.NewRegistry()
				served := 0
				cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
					served++
					return answerA(ctx, req)
				}})
				cfg.ACL, cfg.Private, cfg.Metrics = tt.acl, tt.private, NewMetrics(reg)
				s := start(t, kind, cfg)
				q := queryEDNS("example.org.", dns.TypeA, 1232, false)
				r, err := exchangeFrom(kind, tt.src, s.Addr(), q, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				wantRcode := dns.RcodeSuccess
				if tt.refused {
					wantRcode = dns.RcodeRefused
				}
				if r.Rcode != wantRcode || tt.refused != (len(r.Answer) == 0) {
					t.Fatalf("reply %v, want rcode %s", r, dns.RcodeToString[wantRcode])
				}
				if tt.refused && served != 0 {
					t.Errorf("the handler saw a refused query")
				}
				want := 0.0
				if tt.refused {
					want = 1
				}
				if got := metricValue(t, reg, "dnsedge_listener_guarded_total", map[string]string{"listener": kind, "action": "acl_refused"}); got != want {
					t.Errorf("acl_refused = %v, want %v", got, want)
				}
			})
		}
	}
}

// TestEncryptedOpenByDefault checks that a DoT listener without an acl
// serves a client outside the private ranges.
func TestEncryptedOpenByDefault(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
	cfg.Private = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	cfg.TLS = testTLS(t).server
	dot, err := ListenDoT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dot.Close()
	if !dot.acl.Allows(loop2) {
		t.Errorf("dot listener without acl refuses a public client")
	}
	udp, err := ListenUDP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if udp.acl.Allows(loop2) || !udp.acl.Allows(loop1) {
		t.Errorf("udp listener without acl: not the private ranges")
	}
}

// TestUDPFlood floods a UDP listener from one client while another asks
// a few queries: the flood is limited (a share answered TC, the rest
// REFUSED), the other client's queries are all answered.
func TestUDPFlood(t *testing.T) {
	t.Parallel()
	clk := clockwork.NewFakeClock() // no tokens come back during the test
	rl, err := NewRateLimiter(RateLimit{QPS: 100, Burst: 50, IPv4Prefix: 32, Exempt: []string{}}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
	cfg.RateLimiter, cfg.Metrics = rl, NewMetrics(reg)
	s := start(t, "udp", cfg)

	// The flood: 1000 queries from 127.0.0.1 on one socket, read back
	// within a bounded time.
	const flood = 1000
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loop1, 0)), net.UDPAddrFromAddrPort(s.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Replies the kernel drops when this socket's buffer is full are not
	// the limiter's doing: make the buffer big enough for the flood, and
	// check the limiter by its counters.
	c.SetReadBuffer(4 << 20)
	got := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		// Replies stop coming once the flood is answered, or when the
		// kernel dropped some of it: a second without one ends the wait.
		for range flood {
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			r := new(dns.Msg)
			if r.Unpack(buf[:n]) != nil {
				got["bad"]++
				continue
			}
			switch {
			case r.Truncated:
				got["tc"]++
			case r.Rcode == dns.RcodeRefused:
				got["refused"]++
			case len(r.Answer) == 1:
				got["answer"]++
			default:
				got[dns.RcodeToString[r.Rcode]]++
			}
		}
	}()
	q := query("example.org.", dns.TypeA)
	wire, _ := q.Pack()
	for i := range flood {
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			// The other client, in the middle of the flood. It retries
			// as stub resolvers do: the flood may fill the listener's
			// socket buffer (the kernel drops, not the limiter), most
			// of all under the race detector.
			var r *dns.Msg
			var err error
			for try := 0; try < 3; try++ {
				if r, err = exchangeFrom("udp", loop2, s.Addr(), q, time.Second); err == nil {
					break
				}
			}
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("other client's query %d: %v %v", i/50, r, err)
			}
		}
	}
	<-done
	t.Logf("flood of %d: %v", flood, got)
	if got["answer"] > 50 {
		t.Errorf("%d flood queries answered, want at most the burst of 50", got["answer"])
	}
	if got["tc"] == 0 || got["refused"] == 0 {
		t.Errorf("flood got %v, want both TC and REFUSED answers", got)
	}
	tc := metricValue(t, reg, "dnsedge_listener_guarded_total", map[string]string{"listener": "udp", "action": "rate_tc"})
	refused := metricValue(t, reg, "dnsedge_listener_guarded_total", map[string]string{"listener": "udp", "action": "rate_refused"})
	if int(tc) < got["tc"] || int(refused) < got["refused"] {
		t.Errorf("rate_tc = %v and rate_refused = %v, fewer than the client saw: %v", tc, refused, got)
	}
	// Every flood query the listener read beyond the burst was turned
	// away; those the kernel dropped from a full socket buffer never
	// reached it.
	if limited := int(tc + refused); limited+got["answer"] > flood || limited == 0 {
		t.Errorf("the limiter turned away %d of %d flood queries with %d answered", limited, flood, got["answer"])
	}
}

// TestACLAllows is the ACL's table: IPv4 and IPv6 prefixes, mapped and
// zoned addresses, the empty ACL and the nil one.
func TestACLAllows(t *testing.T) {
	t.Parallel()
	p := func(s ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, v := range s {
			ps = append(ps, netip.MustParsePrefix(v))
		}
		return ps
	}
	tests := []struct {
		acl  []netip.Prefix
		addr string
		want bool
	}{
		{p("10.0.0.0/8"), "10.255.1.2", true},
		{p("10.0.0.0/8"), "11.0.0.1", false},
		{p("10.0.0.0/8"), "::ffff:10.1.2.3", true}, // mapped clients are unmapped
		{p("10.1.2.3/8"), "10.9.9.9", true},        // host bits ignored
		{p("192.168.1.0/24", "192.168.2.0/24"), "192.168.2.77", true},
		{p("192.168.1.0/24", "192.168.2.0/24"), "192.168.3.1", false},
		{p("fd00::/8"), "fd12::1", true},
		{p("fd00::/8"), "fe80::1%eth0", false},
		{p("fe80::/10"), "fe80::1%eth0", true}, // the zone plays no part
		{p("::1/128"), "::1", true},
		{p("::1/128"), "127.0.0.1", false},
		{p("0.0.0.0/0"), "203.0.113.1", true},
		{p("0.0.0.0/0"), "2001:db8::1", false},
		{p("::/0"), "2001:db8::1", true},
		{nil, "127.0.0.1", false},
	}
	for _, tt := range tests {
		a, err := NewACL(tt.acl)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Allows(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%v allows %s: %v, want %v", tt.acl, tt.addr, got, tt.want)
		}
	}
	var none *ACL
	if !none.Allows(netip.MustParseAddr("203.0.113.1")) {
		t.Error("a nil ACL refuses")
	}
	if _, err := NewACL([]netip.Prefix{{}}); err == nil {
		t.Error("an invalid prefix was taken")
	}
}

func BenchmarkACLPrivate(b *testing.B) {
	a, err := NewACL(PrivateRanges)
	if err != nil {
		b.Fatal(err)
	}
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("fd00::1")}
	i := 0
	for b.Loop() {
		a.Allows(addrs[i%len(addrs)])
		i++
	}
}
