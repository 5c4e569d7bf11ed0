package edge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge"
	"github.com/dnsedge/dnsedge/internal/doqclient"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
)

// stateConfig listens on UDP, DoT and DoQ and forwards to the fault
// server's two addresses; extra is appended.
func stateConfig(up *transporttest.Server, certFile, keyFile, upstreams, extra string) string {
	if upstreams == "" {
		upstreams = fmt.Sprintf(`  - {name: v4, url: "udp://%s"}
  - {name: v6, url: "udp://%s"}
`, up.AddrV4(), up.AddrV6())
	}
	return fmt.Sprintf(`listeners:
  - {proto: udp, address: "127.0.0.1:0"}
  - {proto: dot, address: "127.0.0.1:0"}
  - {proto: doq, address: "127.0.0.1:0"}
tls: {cert_file: %q, key_file: %q}
upstreams:
%shealth:
  failure_threshold: 2
  cooldown: 1m
  max_cooldown: 2m
  min_timeout: 50ms
  max_timeout: 200ms
  initial_timeout: 100ms
server:
  query_timeout: 1s
`, certFile, keyFile, upstreams) + extra
}

// newServer builds a server of config without starting it.
func newServer(t *testing.T, config string) *edge.Server {
	t.Helper()
	cfg, err := edge.Parse("test.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := edge.New(cfg, edge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func start(t *testing.T, srv *edge.Server) *edge.Server {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

func pathNamed(t *testing.T, srv *edge.Server, upstream string) *transport.Path {
	t.Helper()
	for _, g := range srv.Groups() {
		for _, p := range g.Paths() {
			if p.ID.Upstream == upstream {
				return p
			}
		}
	}
	t.Fatalf("no path of upstream %s", upstream)
	return nil
}

// udpRelay forwards a client's datagrams to a target it can switch, and
// the replies back, as a load balancer moving a flow to another process
// would: the QUIC client keeps its socket and its connection.
type udpRelay struct {
	front, back *net.UDPConn
	target      atomic.Pointer[netip.AddrPort]
	client      atomic.Pointer[netip.AddrPort]
	// retries counts the QUIC v1 Retry packets (RFC 9000 §17.2.5) the
	// servers sent: a client whose address the server wants validated,
	// and that brings no token the server accepts, gets one.
	retries atomic.Int64
}

func startRelay(t *testing.T, target netip.AddrPort) *udpRelay {
	t.Helper()
	r := &udpRelay{}
	var err error
	if r.front, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0"))); err != nil {
		t.Fatal(err)
	}
	if r.back, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0"))); err != nil {
		t.Fatal(err)
	}
	r.switchTo(target)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		b := make([]byte, 65535)
		for {
			n, from, err := r.front.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			r.client.Store(&from)
			r.back.WriteToUDPAddrPort(b[:n], *r.target.Load())
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		b := make([]byte, 65535)
		for {
			n, _, err := r.back.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			if n > 5 && b[0]&0xf0 == 0xf0 && binary.BigEndian.Uint32(b[1:5]) == 1 {
				r.retries.Add(1)
			}
			if c := r.client.Load(); c != nil {
				r.front.WriteToUDPAddrPort(b[:n], *c)
			}
		}
	}()
	t.Cleanup(func() {
		r.front.Close()
		r.back.Close()
		<-done
		<-done
	})
	return r
}

func (r *udpRelay) switchTo(target netip.AddrPort) { r.target.Store(&target) }

func (r *udpRelay) addr() string { return r.front.LocalAddr().String() }

// doqAsk asks for h1 on c within d.
func doqAsk(c *doqclient.Client, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion("h1.test.example.", dns.TypeA)
	m, err := c.Exchange(ctx, q)
	if err == nil && (m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1) {
		err = fmt.Errorf("reply %v", m)
	}
	return err
}

// TestStateTakeOver: a server that reads another's state answers that
// one's cached names as hits with the TTL they had left, has its paths'
// health, resumes the TLS sessions of its DoT and DoQ clients, sends the
// QUIC clients of the other one stateless resets they accept, and takes
// the other one's address-validation tokens. A server of another
// configuration takes what fits it; one that read nothing has none of it.
func TestStateTakeOver(t *testing.T) {
	up := transporttest.StartFault(t, upstreamZone)
	ca := transporttest.NewCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), ca)
	config := stateConfig(up, certFile, keyFile, "", "")
	old := start(t, newServer(t, config))

	udp := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	for i := range 10 {
		m, _, err := udp.Exchange(ednsQuery(fmt.Sprintf("h%d.test.example.", i), dns.TypeA), old.Addrs()["udp"][0].String())
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("query %d: %v %v", i, err, m)
		}
	}
	v6 := pathNamed(t, old, "v6")
	v6.Health.Observe(0, transport.ClassTimeout)
	v6.Health.Observe(0, transport.ClassTimeout)
	v4 := pathNamed(t, old, "v4").Health.Snapshot()
	if v6.Health.Snapshot().State != transport.Open || !v4.Sampled {
		t.Fatal("setup: v6 breaker not open, or v4 not measured")
	}

	tlsConf := func(cache tls.ClientSessionCache, alpn string) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", NextProtos: []string{alpn}, ClientSessionCache: cache}
	}
	dotCache := tls.NewLRUClientSessionCache(8)
	c, err := tls.Dial("tcp", old.Addrs()["dot"][0].String(), tlsConf(dotCache, "dot"))
	if err != nil {
		t.Fatal(err)
	}
	dotQuery(t, c) // reads the session ticket that came before the reply
	c.Close()

	relay := startRelay(t, old.Addrs()["doq"][0])
	doqCache := tls.NewLRUClientSessionCache(8)
	doq, err := doqclient.Dial(context.Background(), relay.addr(), doqclient.Config{TLS: tlsConf(doqCache, "doq"),
		QUIC: &quic.Config{MaxIdleTimeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer doq.Close()
	if err := doqAsk(doq, 3*time.Second); err != nil {
		t.Fatal(err)
	}

	// Address-validation tokens (NEW_TOKEN) of the old server, one
	// store each for the new server and the cold one.
	tokenStores := [2]quic.TokenStore{quic.NewLRUTokenStore(4, 4), quic.NewLRUTokenStore(4, 4)}
	for _, ts := range tokenStores {
		c, err := doqclient.Dial(context.Background(), relay.addr(), doqclient.Config{TLS: tlsConf(nil, "doq"),
			QUIC: &quic.Config{TokenStore: ts}})
		if err != nil {
			t.Fatal(err)
		}
		if err := doqAsk(c, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	var state bytes.Buffer
	if err := old.WriteState(&state, edge.StateOptions{}); err != nil {
		t.Fatal(err)
	}
	stream := state.Bytes()
	up.Set(transporttest.Faults{Down: true}) // from now on only the cache answers

	t.Run("same config", func(t *testing.T) {
		srv := newServer(t, config)
		if err := srv.ReadState(bytes.NewReader(stream)); err != nil {
			t.Fatal(err)
		}
		start(t, srv)
		if err := srv.ReadState(bytes.NewReader(stream)); err == nil {
			t.Fatal("ReadState after Start accepted")
		}
		if got := pathNamed(t, srv, "v6").Health.Snapshot(); got.State != transport.Open || got.Consecutive != 2 {
			t.Fatalf("v6 health %+v, want open after 2 failures", got)
		}
		if got := pathNamed(t, srv, "v4").Health.Snapshot(); got.SRTT != v4.SRTT || got.RTTVar != v4.RTTVar || got.State != transport.Closed {
			t.Fatalf("v4 health %+v, want SRTT %s", got, v4.SRTT)
		}
		for i := range 10 {
			m, _, err := udp.Exchange(ednsQuery(fmt.Sprintf("h%d.test.example.", i), dns.TypeA), srv.Addrs()["udp"][0].String())
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || edeOf(m) != -1 {
				t.Fatalf("h%d with the upstream down: %v %v; want a fresh cache hit", i, err, m)
			}
			if ttl := m.Answer[0].Header().Ttl; ttl > 60 || ttl < 50 {
				t.Fatalf("h%d: TTL %d, want what was left of 60s", i, ttl)
			}
		}

		c, err := tls.Dial("tcp", srv.Addrs()["dot"][0].String(), tlsConf(dotCache, "dot"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !c.ConnectionState().DidResume {
			t.Fatal("DoT session of the old server not resumed")
		}

		relay.switchTo(srv.Addrs()["doq"][0])
		err = doqAsk(doq, 5*time.Second)
		var reset *quic.StatelessResetError
		if !errors.As(err, &reset) {
			t.Fatalf("old DoQ connection on the new server: %v, want a stateless reset", err)
		}
		again, err := doqclient.Dial(context.Background(), relay.addr(), doqclient.Config{TLS: tlsConf(doqCache, "doq")})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if !again.Conn().ConnectionState().TLS.DidResume {
			t.Fatal("DoQ session of the old server not resumed")
		}
		// The relay's address holds a connection now, so the listener
		// wants a new one from it validated: the old server's token
		// does that, with no Retry.
		retries := relay.retries.Load()
		third, err := doqclient.Dial(context.Background(), relay.addr(), doqclient.Config{TLS: tlsConf(nil, "doq"),
			QUIC: &quic.Config{TokenStore: tokenStores[0]}})
		if err != nil {
			t.Fatal(err)
		}
		defer third.Close()
		if n := relay.retries.Load() - retries; n != 0 {
			t.Fatalf("%d Retry packets for a client with the old server's token, want none", n)
		}
	})

	t.Run("other config", func(t *testing.T) {
		// v6 is gone, v4b is new, the cache holds 8 entries (and no
		// failures, which would push entries out as the misses come).
		ups := fmt.Sprintf(`  - {name: v4, url: "udp://%s"}
  - {name: v4b, url: "udp://%s"}
`, up.AddrV4(), up.AddrV4())
		srv := newServer(t, stateConfig(up, certFile, keyFile, ups, "cache: {max_entries: 8, servfail_ttl: 0s}\n"))
		if err := srv.ReadState(bytes.NewReader(stream)); err != nil {
			t.Fatal(err)
		}
		start(t, srv)
		if got := pathNamed(t, srv, "v4").Health.Snapshot(); got.SRTT != v4.SRTT {
			t.Fatalf("v4 health %+v, want SRTT %s", got, v4.SRTT)
		}
		if got := pathNamed(t, srv, "v4b").Health.Snapshot(); got.Sampled {
			t.Fatalf("new path v4b has health %+v, want fresh", got)
		}
		hits := 0
		for i := range 10 {
			m, _, err := udp.Exchange(ednsQuery(fmt.Sprintf("h%d.test.example.", i), dns.TypeA), srv.Addrs()["udp"][0].String())
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 {
				hits++
			}
		}
		if hits != 8 {
			t.Fatalf("%d names answered from the cache, want 8 (its size)", hits)
		}
	})

	t.Run("cold", func(t *testing.T) {
		srv := start(t, newServer(t, config))
		c, err := tls.Dial("tcp", srv.Addrs()["dot"][0].String(), tlsConf(dotCache, "dot"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.ConnectionState().DidResume {
			t.Fatal("a server that read no state resumed a session")
		}
		if got := pathNamed(t, srv, "v6").Health.Snapshot(); got.State != transport.Closed {
			t.Fatalf("v6 health %+v without state", got)
		}
		relay2 := startRelay(t, old.Addrs()["doq"][0])
		d2, err := doqclient.Dial(context.Background(), relay2.addr(), doqclient.Config{TLS: tlsConf(nil, "doq"),
			QUIC: &quic.Config{MaxIdleTimeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		relay2.switchTo(srv.Addrs()["doq"][0])
		err = doqAsk(d2, 3*time.Second)
		var reset *quic.StatelessResetError
		if err == nil || errors.As(err, &reset) {
			t.Fatalf("old DoQ connection on a server with other keys: %v, want no reset it accepts", err)
		}
		held, err := doqclient.Dial(context.Background(), relay2.addr(), doqclient.Config{TLS: tlsConf(nil, "doq")})
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		retries := relay2.retries.Load()
		tokened, err := doqclient.Dial(context.Background(), relay2.addr(), doqclient.Config{TLS: tlsConf(nil, "doq"),
			QUIC: &quic.Config{TokenStore: tokenStores[1]}})
		if err != nil {
			t.Fatal(err)
		}
		defer tokened.Close()
		if n := relay2.retries.Load() - retries; n == 0 {
			t.Fatal("the old server's token was accepted by a server with another token key")
		}
	})
}
