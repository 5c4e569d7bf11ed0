package listen

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestTCPPipelining sends 100 queries on one connection; the handler
// holds each until the answer to the next one has arrived, so the answers
// come back in reverse order and must still match their queries by ID
// (RFC 7766 §6.2.1.1).
func TestTCPPipelining(t *testing.T) {
	t.Parallel()
	const n = 100
	var release [n]chan struct{}
	for i := range release {
		release[i] = make(chan struct{})
	}
	var arrived atomic.Int32
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		i := int(req.Msg.Id)
		if arrived.Add(1) == n {
			close(release[n-1]) // all are in flight: the last goes first
		}
		select {
		case <-release[i]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return answerA(ctx, req)
	}}
	s := start(t, "tcp", testConfig(t, fam4, h))
	c := dialTCP(t, s)
	var batch []byte
	for i := range n {
		q := query("example.org.", dns.TypeA)
		q.Id = uint16(i)
		wire, _ := q.Pack()
		batch = append(batch, frameOf(wire)...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint16]bool)
	for got := 1; got <= n; got++ {
		b, err := readTCPMsg(c)
		if err != nil {
			t.Fatalf("answer %d: %v", got, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || seen[r.Id] || r.Id >= n {
			t.Fatalf("answer %d: id %d rcode %s (dup %v)", got, r.Id, dns.RcodeToString[r.Rcode], seen[r.Id])
		}
		seen[r.Id] = true
		if want := uint16(n - got); r.Id != want {
			t.Fatalf("answer %d is for query %d, want %d", got, r.Id, want)
		}
		if r.Id > 0 {
			close(release[r.Id-1])
		}
	}
}

func dialTCP(t *testing.T, s server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// wantClosed reads from c until the server closes it, failing when that
// takes longer than within.
func wantClosed(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	c.SetReadDeadline(begin.Add(within))
	n, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatalf("connection still open after %v (%d bytes read)", within, n)
	}
	return time.Since(begin)
}

func TestTCPTimeouts(t *testing.T) {
	t.Parallel()
	const short = 100 * time.Millisecond
	tests := []struct {
		name  string
		cfg   func(*Config)
		send  []byte
		least time.Duration // the connection must live at least this long
	}{
		{"idle", func(c *Config) { c.IdleTimeout = short }, nil, short},
		{"slowloris: one byte of length", func(c *Config) { c.ReadTimeout = short }, []byte{0}, short},
		{"slowloris: half a message", func(c *Config) { c.ReadTimeout = short }, []byte{0, 40, 1, 2, 3}, short},
		{"zero length", nil, []byte{0, 0}, 0},
		{"response on tcp", nil, append([]byte{0, 12, 0, 1, 0x80, 0}, make([]byte, 8)...), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, fam4, &fakeHandler{t: t})
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := start(t, "tcp", cfg)
			c := dialTCP(t, s)
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			// The defaults (10s idle, 2s read) would outlast this.
			if took := wantClosed(t, c, time.Second); took < tt.least-10*time.Millisecond {
				t.Errorf("closed after %v, before %v", took, tt.least)
			}
		})
	}
}

// TestTCPFormErrKeepsConnection checks that a framed message with a sane
// header and a broken body is answered FORMERR and the connection serves
// the next query.
func TestTCPFormErrKeepsConnection(t *testing.T) {
	t.Parallel()
	s := start(t, "tcp", testConfig(t, fam4, &fakeHandler{t: t, serve: answerA}))
	c := dialTCP(t, s)
	junk := []byte{0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff}
	b, err := tcpRoundTrip(c, junk)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil || r.Rcode != dns.RcodeFormatError || r.Id != 9 {
		t.Fatalf("reply %v, %v; want FORMERR for id 9", r, err)
	}
	wire, _ := query("example.org.", dns.TypeA).Pack()
	if b, err = tcpRoundTrip(c, wire); err != nil {
		t.Fatal(err)
	}
	if err := r.Unpack(b); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("reply %v, %v; want an answer", r, err)
	}
}

func TestTCPMaxConns(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
	cfg.MaxConns = 2
	cfg.Metrics = NewMetrics(reg)
	s := start(t, "tcp", cfg)
	wire, _ := query("example.org.", dns.TypeA).Pack()
	for range cfg.MaxConns {
		// An answer proves the server accepted and counted the connection.
		if _, err := tcpRoundTrip(dialTCP(t, s), wire); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, reg, "dnsedge_listener_connections", map[string]string{"listener": "tcp"}); got != 2 {
		t.Errorf("connections{listener=tcp} = %v, want 2", got)
	}
	c := dialTCP(t, s)
	c.Write(frameOf(wire)) // may fail once the server closed it
	wantClosed(t, c, time.Second)
	labels := map[string]string{"listener": "tcp", "reason": "conn_limit"}
	if got := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); got != 1 {
		t.Errorf("dropped_total%v = %v, want 1", labels, got)
	}
}

// TestTCPSlowReader checks that a client that stops reading its answers is
// disconnected after WriteTimeout.
func TestTCPSlowReader(t *testing.T) {
	t.Parallel()
	huge := new(dns.Msg)
	for i := range 60 {
		huge.Answer = append(huge.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: "huge.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Txt: []string{strings.Repeat(strconv.Itoa(i%10), 255), strings.Repeat("y", 255), strings.Repeat("z", 255)},
		})
	}
	h := &fakeHandler{t: t, serve: func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		m.Answer = huge.Answer // about 46 KB
		return m, nil
	}}
	cfg := testConfig(t, fam4, h)
	cfg.WriteTimeout = 100 * time.Millisecond
	cfg.Metrics = NewMetrics(nil)
	closed := make(chan struct{}, 1)
	km := cfg.Metrics.kind(pipeline.KindTCP)
	km.conns = signalGauge{km.conns, closed}
	s := start(t, "tcp", cfg)
	c := dialTCP(t, s)
	// A small receive buffer stops the kernel from taking megabytes on the
	// client's behalf; 400 answers then overflow the server's send buffer.
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	wire, _ := query("huge.example.", dns.TypeTXT).Pack()
	var batch []byte
	for range 400 {
		batch = append(batch, frameOf(wire)...)
	}
	go c.Write(batch) // blocks too once the server stops reading
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection of a client that does not read still open")
	}
	// What was sent before the server gave up can be read, then the end.
	wantClosed(t, c, 5*time.Second)
}

// signalGauge is a gauge that also reports each Dec on a channel.
type signalGauge struct {
	prometheus.Gauge
	c chan<- struct{}
}

func (s signalGauge) Dec() {
	s.Gauge.Dec()
	s.c <- struct{}{}
}

// TestTCPClose checks that Close returns with connections open: idle ones,
// and one whose query is still being served.
func TestTCPClose(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		close(started)
		<-ctx.Done() // answers when its budget runs out
		return nil, ctx.Err()
	}}
	cfg := testConfig(t, fam4, h)
	cfg.QueryTimeout = 200 * time.Millisecond
	l, err := ListenTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	srv := server(l)
	idle := dialTCP(t, srv)
	busy := dialTCP(t, srv)
	wire, _ := query("example.org.", dns.TypeA).Pack()
	if _, err := busy.Write(frameOf(wire)); err != nil {
		t.Fatal(err)
	}
	<-started
	begin := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	// The query in flight was answered before its connection closed.
	b, err := readTCPMsg(busy)
	if err != nil {
		t.Fatalf("no answer to the query in flight: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Errorf("answer %v, %v; want SERVFAIL", r, err)
	}
	wantClosed(t, busy, time.Second)
	wantClosed(t, idle, time.Second)
	if c, err := net.Dial("tcp", srv.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still accepts")
	}
}
