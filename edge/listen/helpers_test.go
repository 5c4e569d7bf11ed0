package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestMain fails the run when a listener goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(2 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines still running code of
// this package or its internal packages after waiting up to d for them to
// end.
func leakedGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			ours := strings.Contains(g, "dnsedge/edge/listen.") || strings.Contains(g, "dnsedge/edge/listen/internal/")
			if ours && !strings.Contains(g, "leakedGoroutines") &&
				!strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "TestMain") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeHandler is a pipeline.Handler whose behaviour is a function field;
// a query reaching a fake without one fails the test.
type fakeHandler struct {
	t     *testing.T
	serve func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
}

var _ pipeline.Handler = (*fakeHandler)(nil)

func (f *fakeHandler) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	if f.serve == nil {
		f.t.Errorf("unexpected query %v", req.Question())
		return nil, errors.New("unexpected query")
	}
	return f.serve(ctx, req)
}

// answerA answers every query with one A record.
func answerA(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(req.Msg)
	m.Answer = append(m.Answer, mustRR("example.org. 60 IN A 192.0.2.1"))
	return m, nil
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// family is a loopback address to listen on.
type family struct {
	name string
	addr netip.AddrPort
}

var (
	fam4 = family{"ipv4", netip.MustParseAddrPort("127.0.0.1:0")}
	fam6 = family{"ipv6", netip.MustParseAddrPort("[::1]:0")}
)

// needFamily skips the test when the family cannot be bound here, unless
// E2E_REQUIRED=1 makes that a failure.
func needFamily(t testing.TB, f family) {
	t.Helper()
	if f.addr.Addr().Is4() {
		return
	}
	c, err := net.ListenPacket("udp6", f.addr.String())
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("E2E_REQUIRED") == "1" {
		t.Fatalf("cannot bind %s: %v", f.addr, err)
	}
	t.Skipf("cannot bind %s: %v", f.addr, err)
}

// server is what the tests need of a listener.
type server interface {
	Serve() error
	Close() error
	Addr() netip.AddrPort
}

// testConfig returns a Config for a listener on f serving h.
func testConfig(t testing.TB, f family, h pipeline.Handler) Config {
	return Config{
		Addr:    f.addr,
		Handler: func() pipeline.Handler { return h },
		Logger:  testLogger(t),
		Sockets: 2,
	}
}

// start binds a listener of the given kind ("udp" or "tcp"), runs Serve
// and closes it when the test ends. Binding happens before start returns,
// so the listener is ready by construction.
func start(t testing.TB, kind string, cfg Config) server {
	t.Helper()
	var (
		s   server
		err error
	)
	switch kind {
	case "udp":
		s, err = ListenUDP(cfg)
	case "tcp":
		s, err = ListenTCP(cfg)
	case "dot":
		cfg.TLS = testTLS(t).server
		s, err = ListenDoT(cfg)
	default:
		t.Fatalf("unknown listener kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s)
}

// serve runs s.Serve until the test ends.
func serve(t testing.TB, s server) server {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// exchange sends q to addr over network ("udp" or "tcp") and returns the
// reply, or an error when none came within timeout. It packs a copy: Pack
// writes the extended rcode into q's OPT record, and parallel subtests share
// their table's queries.
func exchange(netw string, addr netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	wire, err := q.Copy().Pack()
	if err != nil {
		return nil, err
	}
	b, err := exchangeRaw(netw, addr, wire, timeout)
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, fmt.Errorf("unpack reply: %w", err)
	}
	return r, nil
}

// exchangeRaw sends wire, framed when netw is "tcp" or "dot" (over TLS
// trusting the test CA), and returns the raw
// reply.
func exchangeRaw(netw string, addr netip.AddrPort, wire []byte, timeout time.Duration) ([]byte, error) {
	var c net.Conn
	if netw == "dot" {
		pki, err := testPKIOnce()
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: pki.clientTLS("dns.test", "dot")}
		if c, err = d.Dial("tcp", addr.String()); err != nil {
			return nil, err
		}
	} else {
		var err error
		if c, err = net.Dial(netw, addr.String()); err != nil {
			return nil, err
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if netw != "udp" {
		return tcpRoundTrip(c, wire)
	}
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func tcpRoundTrip(c net.Conn, wire []byte) ([]byte, error) {
	if _, err := c.Write(frameOf(wire)); err != nil {
		return nil, err
	}
	return readTCPMsg(c)
}

func frameOf(wire []byte) []byte {
	return append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)
}

func readTCPMsg(c net.Conn) ([]byte, error) {
	var hdr [2]byte
	if _, err := readFull(c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := readFull(c, b); err != nil {
		return nil, err
	}
	return b, nil
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func query(name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	return q
}

func queryEDNS(name string, qtype uint16, size uint16, do bool) *dns.Msg {
	q := query(name, qtype)
	q.SetEdns0(size, do)
	return q
}

// logRecorder is a slog.Handler that keeps the records it is given.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// find returns the first record at level with msg, and its attributes.
func (r *logRecorder) find(level slog.Level, msg string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Level == level && rec.Message == msg {
			attrs := map[string]string{}
			rec.Attrs(func(a slog.Attr) bool {
				attrs[a.Key] = a.Value.String()
				return true
			})
			return attrs, true
		}
	}
	return nil, false
}

// testLogger logs warnings and errors to the test output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// metricValue returns the value of the counter or gauge name with the
// given labels in reg, 0 when absent.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
