package listen

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/doqclient"
)

// The attacks below have been CVEs of other DoQ servers. They count
// goroutines, so they do not run in parallel with other tests.

// TestDoQStreamFlood opens far more streams than MaxQueriesPerConn on one
// connection, each stalled after one byte: QUIC flow control lets only
// the cap be open, the listener runs at most one goroutine per open
// stream, and once the stalled ones are reset the connection serves again.
func TestDoQStreamFlood(t *testing.T) {
	const limit, attempts = 8, 1000
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
	cfg.MaxQueriesPerConn = limit
	cfg.ReadTimeout = 300 * time.Millisecond
	l := startDoQ(t, cfg)
	c := l.dial(t, "dns.test")
	before := runtime.NumGoroutine()
	opened := 0
	for range attempts {
		s, err := c.Conn().OpenStream()
		if err != nil {
			var le quic.StreamLimitReachedError
			var lp *quic.StreamLimitReachedError
			if !errors.As(err, &le) && !errors.As(err, &lp) {
				t.Fatalf("open stream: %v", err)
			}
			continue
		}
		opened++
		s.Write([]byte{0})
	}
	if opened != limit {
		t.Errorf("client could open %d streams, want %d", opened, limit)
	}
	if !eventually(2*time.Second, func() bool { s, _ := doqGoroutines(); return s == limit }) {
		s, _ := doqGoroutines()
		t.Errorf("%d stream goroutines, want %d", s, limit)
	}
	if grown := runtime.NumGoroutine() - before; grown > limit+20 {
		t.Errorf("%d goroutines more for %d stream attempts", grown, attempts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Exchange(ctx, query("example.org.", dns.TypeA)); err != nil {
		t.Errorf("query after the stalled streams were reset: %v", err)
	}
	if !eventually(2*time.Second, func() bool { s, _ := doqGoroutines(); return s == 0 }) {
		s, _ := doqGoroutines()
		t.Errorf("%d stream goroutines left", s)
	}
}

// TestDoQSlowStreams sends one byte on many streams and stalls: each is
// reset with DOQ_REQUEST_CANCELLED once ReadTimeout has passed since it
// began, and their goroutines end.
func TestDoQSlowStreams(t *testing.T) {
	const n, readTimeout = 20, 200 * time.Millisecond
	cfg := testConfig(t, fam4, &fakeHandler{t: t})
	cfg.MaxQueriesPerConn = n
	cfg.ReadTimeout = readTimeout
	l := startDoQ(t, cfg)
	c := l.dial(t, "dns.test")
	start := time.Now()
	var streams []*quic.Stream
	for range n {
		s, err := c.Conn().OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{0})
		s.SetReadDeadline(time.Now().Add(3 * time.Second))
		streams = append(streams, s)
	}
	for i, s := range streams {
		_, err := io.ReadAll(s)
		if code := streamResetCode(err); code != doqRequestCancelled {
			t.Fatalf("stream %d: %v, want a reset with DOQ_REQUEST_CANCELLED", i, err)
		}
	}
	if d := time.Since(start); d < readTimeout*9/10 || d > readTimeout+2*time.Second {
		t.Errorf("streams reset after %v, want about %v", d, readTimeout)
	}
	if !eventually(2*time.Second, func() bool { s, _ := doqGoroutines(); return s == 0 }) {
		s, _ := doqGoroutines()
		t.Errorf("%d stream goroutines left", s)
	}
	if c.Conn().Context().Err() != nil {
		t.Error("slow streams closed the whole connection")
	}
}

// TestDoQConnLimits opens connections beyond MaxConnsPerClient, and
// beyond MaxConns: the extra one is closed with DOQ_EXCESSIVE_LOAD and
// counted, and a connection is admitted again once one is closed.
func TestDoQConnLimits(t *testing.T) {
	for _, tt := range []struct {
		name              string
		maxConns, perConn int
		reason            string
	}{
		{"per client", 100, 2, "client_limit"},
		{"total", 2, 64, "conn_limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
			cfg.MaxConns, cfg.MaxConnsPerClient = tt.maxConns, tt.perConn
			cfg.Metrics = NewMetrics(reg)
			l := startDoQ(t, cfg)
			ask := func(c *doqclient.Client) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := c.Exchange(ctx, query("example.org.", dns.TypeA))
				return err
			}
			first := l.dial(t, "dns.test")
			second := l.dial(t, "dns.test")
			for _, c := range []*doqclient.Client{first, second} {
				if err := ask(c); err != nil {
					t.Fatal(err)
				}
			}
			extra := l.dial(t, "dns.test")
			if code, cause := closedWith(extra.Conn(), 5*time.Second); code != doqExcessiveLoad {
				t.Fatalf("extra connection closed with %d (%v), want DOQ_EXCESSIVE_LOAD", code, cause)
			}
			labels := map[string]string{"listener": "doq", "reason": tt.reason}
			if v := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); v != 1 {
				t.Errorf("dropped%v = %v, want 1", labels, v)
			}
			first.Close()
			if !eventually(2*time.Second, func() bool { return l.openConnCount() == 1 }) {
				t.Fatalf("%d connections open after one closed", l.openConnCount())
			}
			if err := ask(l.dial(t, "dns.test")); err != nil {
				t.Errorf("connection after one was closed: %v", err)
			}
		})
	}
}

// TestDoQStalledHandshake lets a client's first flight through and then
// nothing more: the listener, which took the connection early, drops it
// after HandshakeTimeout.
func TestDoQStalledHandshake(t *testing.T) {
	const handshakeTimeout = 200 * time.Millisecond
	cfg := testConfig(t, fam4, &fakeHandler{t: t})
	cfg.HandshakeTimeout = handshakeTimeout
	l := startDoQ(t, cfg)
	p := newUDPProxy(t, l.Addr().String())
	p.dropHandshake.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := doqclient.Dial(ctx, p.addr(), doqclient.Config{TLS: l.pki.clientTLS("dns.test")})
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	if !eventually(3*time.Second, func() bool { return l.openConnCount() == 1 }) {
		t.Fatal("the listener never took the connection")
	}
	// quic-go gives up after HandshakeTimeout without a packet, or twice
	// that in all; 3s is well below the 5s default.
	if !eventually(3*time.Second, func() bool { return l.openConnCount() == 0 }) {
		t.Fatal("stalled handshake still held after 3s")
	}
	cancel()
	<-dialed // the client may believe its handshake complete: it sent Finished
}

// TestDoQOverload fills the listener's MaxConcurrent slots: a stream
// beyond them is reset with DOQ_EXCESSIVE_LOAD at once, and counted.
func TestDoQOverload(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		entered <- struct{}{}
		<-release
		return answerA(ctx, req)
	}}
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, h)
	cfg.MaxConcurrent = 1
	cfg.Metrics = NewMetrics(reg)
	l := startDoQ(t, cfg)
	c := l.dial(t, "dns.test")
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Exchange(ctx, query("example.org.", dns.TypeA))
		first <- err
	}()
	<-entered
	_, err := rawExchange(c.Conn(), doqFrame(t, query("example.org.", dns.TypeA)), 5*time.Second)
	if code := streamResetCode(err); code != doqExcessiveLoad {
		t.Errorf("stream beyond MaxConcurrent: %v, want a reset with DOQ_EXCESSIVE_LOAD", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("query holding the slot: %v", err)
	}
	labels := map[string]string{"listener": "doq", "reason": "overload"}
	if v := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); v != 1 {
		t.Errorf("dropped%v = %v, want 1", labels, v)
	}
}

// TestDoQRetryBusyClient: a client address that already holds a
// connection must prove it owns the address (QUIC Retry) before another
// handshake counts against its slots, so spoofed Initials cannot fill
// them; the real client still gets through, one round trip later.
func TestDoQRetryBusyClient(t *testing.T) {
	t.Parallel()
	s := startDoQ(t, testConfig(t, fam4, &fakeHandler{t: t, serve: answerA}))
	ask := func(c interface {
		Exchange(context.Context, *dns.Msg) (*dns.Msg, error)
	}) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Exchange(ctx, query("example.org.", dns.TypeA))
		return err
	}
	dialVia := func(p *udpProxy) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := doqclient.Dial(ctx, p.addr(), doqclient.Config{TLS: s.pki.clientTLS("dns.test")})
		if err != nil {
			return err
		}
		defer c.Close()
		return ask(c)
	}

	first := newUDPProxy(t, s.Addr().String())
	if err := dialVia(first); err != nil {
		t.Fatal(err)
	}
	if n := first.retries.Load(); n != 0 {
		t.Fatalf("a client with no connection open got %d Retry packets", n)
	}
	held := s.dial(t, "dns.test") // 127.0.0.1 now holds a connection
	if err := ask(held); err != nil {
		t.Fatal(err)
	}
	second := newUDPProxy(t, s.Addr().String())
	if err := dialVia(second); err != nil {
		t.Fatalf("a second connection from a busy address: %v", err)
	}
	if n := second.retries.Load(); n == 0 {
		t.Fatal("a second connection from an address holding one was not asked to validate it")
	}
}
