package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestLimiter checks the resizable semaphore of the TCP listeners.
func TestLimiter(t *testing.T) {
	t.Parallel()
	s := newLimiter(1)
	if !s.tryAcquire() || s.tryAcquire() {
		t.Fatal("a limiter of 1 gives other than one slot")
	}
	stop := make(chan struct{})
	got := make(chan bool)
	go func() { got <- s.acquire(stop) }()
	go func() { got <- s.acquire(stop) }()
	s.setMax(3) // wakes both waiters, with room for both
	if !<-got || !<-got {
		t.Fatal("waiters not given the slots of a raised max")
	}
	s.setMax(1)
	s.release()
	s.release()
	if s.tryAcquire() {
		t.Fatal("a slot beyond a lowered max while two are held")
	}
	go func() { got <- s.acquire(stop) }()
	s.release() // none held now: the waiter gets the one slot
	if !<-got {
		t.Fatal("waiter not given a released slot")
	}
	go func() { got <- s.acquire(stop) }()
	close(stop)
	if <-got {
		t.Fatal("acquire succeeded after stop with no slot free")
	}
}

// limitsListener is one listener kind under TestSetLimits.
type limitsListener struct {
	kind string
	// start starts the listener of cfg and returns its SetLimits and a
	// dial function, which opens a new connection (a socket for UDP) and
	// returns a function that sends a query on it.
	start func(t *testing.T, cfg Config) (set func(Limits) error, dial func() (ask func(name string) error, err error))
}

func limitsListeners() []limitsListener {
	const timeout = 5 * time.Second
	stream := func(kind string) func(t *testing.T, cfg Config) (func(Limits) error, func() (func(string) error, error)) {
		return func(t *testing.T, cfg Config) (func(Limits) error, func() (func(string) error, error)) {
			s := start(t, kind, cfg)
			return s.(interface{ SetLimits(Limits) error }).SetLimits, func() (func(string) error, error) {
				var c net.Conn
				var err error
				switch kind {
				case "dot":
					d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: testTLS(t).clientTLS("dns.test", "dot")}
					c, err = d.Dial("tcp", s.Addr().String())
				default:
					c, err = net.DialTimeout(kind, s.Addr().String(), timeout)
				}
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { c.Close() })
				return func(name string) error {
					wire, _ := query(name, dns.TypeA).Pack()
					c.SetDeadline(time.Now().Add(timeout))
					if kind == "udp" {
						if _, err := c.Write(wire); err != nil {
							return err
						}
						_, err := c.Read(make([]byte, 512))
						return err
					}
					_, err := tcpRoundTrip(c, wire)
					return err
				}, nil
			}
		}
	}
	return []limitsListener{
		{"udp", stream("udp")},
		{"tcp", stream("tcp")},
		{"dot", stream("dot")},
		{"doh", func(t *testing.T, cfg Config) (func(Limits) error, func() (func(string) error, error)) {
			pki := testTLS(t)
			cfg.TLS = pki.server
			l := startDoH(t, cfg)
			return l.SetLimits, func() (func(string) error, error) {
				// A client of its own opens a connection of its own.
				c := newDoHClient(t, "h2", l, pki.roots)
				return func(name string) error {
					wire, _ := query(name, dns.TypeA).Pack()
					req, err := http.NewRequest(http.MethodPost, c.base+DefaultHTTPPath, bytes.NewReader(wire))
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", dnsMessageType)
					res, err := c.Do(req)
					if err != nil {
						return err
					}
					defer res.Body.Close()
					io.Copy(io.Discard, res.Body)
					if res.StatusCode != http.StatusOK {
						return fmt.Errorf("status %d", res.StatusCode)
					}
					return nil
				}, nil
			}
		}},
		{"doq", func(t *testing.T, cfg Config) (func(Limits) error, func() (func(string) error, error)) {
			l := startDoQ(t, cfg)
			return l.SetLimits, func() (func(string) error, error) {
				c, err := l.tryDial("dns.test")
				if err != nil {
					return nil, err
				}
				t.Cleanup(func() { c.Close() })
				return func(name string) error {
					ctx, cancel := context.WithTimeout(context.Background(), timeout)
					defer cancel()
					_, err := c.Exchange(ctx, query(name, dns.TypeA))
					return err
				}, nil
			}
		}},
	}
}

// TestSetLimits changes the limits of running listeners of every kind
// and checks that new queries and connections get them.
func TestSetLimits(t *testing.T) {
	t.Parallel()
	for _, ll := range limitsListeners() {
		t.Run(ll.kind+"/query timeout", func(t *testing.T) {
			t.Parallel()
			deadlines := make(chan time.Duration, 1)
			h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				d, _ := ctx.Deadline()
				deadlines <- time.Until(d)
				return answerA(ctx, req)
			}}
			cfg := testConfig(t, fam4, h)
			cfg.QueryTimeout = time.Minute
			set, dial := ll.start(t, cfg)
			ask, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []time.Duration{time.Hour, 20 * time.Second} {
				if err := set(Limits{QueryTimeout: want}); err != nil {
					t.Fatal(err)
				}
				if err := ask("example.org."); err != nil {
					t.Fatal(err)
				}
				// Received to the deadline is want; the handler runs
				// within a few seconds of it at worst.
				if got := <-deadlines; got > want || got < want-5*time.Second {
					t.Errorf("QueryTimeout %v: the handler's deadline is in %v", want, got)
				}
			}
		})
		t.Run(ll.kind+"/max concurrent raised", func(t *testing.T) {
			t.Parallel()
			started, release := make(chan struct{}), make(chan struct{})
			h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				if req.Msg.Question[0].Name == "block.example." {
					close(started)
					select { // a handler waits under ctx (pipeline.Handler)
					case <-release:
					case <-ctx.Done():
					}
				}
				return answerA(ctx, req)
			}}
			cfg := testConfig(t, fam4, h)
			cfg.MaxConcurrent = 1
			set, dial := ll.start(t, cfg)
			blocked := make(chan error, 1)
			ask1, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			go func() { blocked <- ask1("block.example.") }()
			defer func() {
				close(release)
				if err := <-blocked; err != nil {
					t.Errorf("blocked query: %v", err)
				}
			}()
			<-started // the one slot is taken
			if err := set(Limits{MaxConcurrent: 2}); err != nil {
				t.Fatal(err)
			}
			ask2, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			if err := ask2("example.org."); err != nil {
				t.Errorf("query beyond the first MaxConcurrent, within the new: %v", err)
			}
		})
		if ll.kind == "udp" {
			continue
		}
		t.Run(ll.kind+"/max conns", func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			cfg := testConfig(t, fam4, &fakeHandler{t: t, serve: answerA})
			cfg.Metrics = NewMetrics(reg)
			set, dial := ll.start(t, cfg)
			var held []func(string) error
			for range 2 {
				ask, err := dial()
				if err == nil {
					err = ask("example.org.") // the server has counted it
				}
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, ask)
			}
			if err := set(Limits{MaxConns: 2}); err != nil {
				t.Fatal(err)
			}
			ask, err := dial()
			if err == nil {
				err = ask("example.org.")
			}
			if err == nil {
				t.Fatal("a connection beyond the lowered MaxConns is served")
			}
			labels := map[string]string{"listener": ll.kind, "reason": reasonConnLimit.String()}
			if v := metricValue(t, reg, "dnsedge_listener_dropped_total", labels); v != 1 {
				t.Errorf("dropped%v = %v, want 1", labels, v)
			}
			for i, ask := range held {
				if err := ask("example.org."); err != nil {
					t.Errorf("held connection %d: %v", i, err)
				}
			}
			if err := set(Limits{MaxConns: 3}); err != nil {
				t.Fatal(err)
			}
			ask, err = dial()
			if err == nil {
				err = ask("example.org.")
			}
			if err != nil {
				t.Errorf("a connection within the raised MaxConns: %v", err)
			}
		})
	}
}

// TestSetLimitsNegative checks that SetLimits refuses a negative value
// and keeps the limits.
func TestSetLimitsNegative(t *testing.T) {
	t.Parallel()
	l, err := ListenUDP(testConfig(t, fam4, &fakeHandler{t: t}))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetLimits(Limits{QueryTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLimits(Limits{MaxConcurrent: -1}); err == nil {
		t.Fatal("negative MaxConcurrent accepted")
	}
	if got := *l.limits(); got.QueryTimeout != time.Hour || got.MaxConcurrent != DefaultMaxConcurrent {
		t.Errorf("limits %+v after a refused change", got)
	}
}

// TestSetLimitsPerConn checks that connections opened after SetLimits
// announce the new MaxQueriesPerConn: in the HTTP/2 SETTINGS of the DoH
// listener's own server, in the QUIC stream limit of DoQ.
func TestSetLimitsPerConn(t *testing.T) {
	t.Parallel()
	t.Run("doh", func(t *testing.T) {
		t.Parallel()
		cfg := dohTestConfig(t, fam4, &fakeHandler{t: t}, testTLS(t))
		cfg.MaxQueriesPerConn = 7
		l := startDoH(t, cfg)
		if err := l.SetLimits(Limits{MaxQueriesPerConn: 3}); err != nil {
			t.Fatal(err)
		}
		f, ok := dialH2Raw(t, l, false).read().(*http2.SettingsFrame)
		if !ok {
			t.Fatalf("first frame %v, want SETTINGS", f)
		}
		if v, _ := f.Value(http2.SettingMaxConcurrentStreams); v != 3 {
			t.Errorf("MAX_CONCURRENT_STREAMS %d, want 3", v)
		}
	})
	t.Run("doq", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(t, fam4, &fakeHandler{t: t})
		cfg.MaxQueriesPerConn = 7
		l := startDoQ(t, cfg)
		if err := l.SetLimits(Limits{MaxQueriesPerConn: 2}); err != nil {
			t.Fatal(err)
		}
		qc := l.dial(t, "dns.test").Conn()
		for i := range 3 {
			_, err := qc.OpenStream()
			if i < 2 && err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if i == 2 && err == nil {
				t.Error("a third stream opened under a limit of 2")
			}
		}
	})
}
