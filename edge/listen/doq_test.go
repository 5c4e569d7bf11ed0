package listen

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestDoQAnswers runs queries through a DoQ listener on both families.
func TestDoQAnswers(t *testing.T) {
	t.Parallel()
	many := func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, _ := answerA(ctx, req)
		m.Answer = nil
		for i := range 120 {
			m.Answer = append(m.Answer, mustRR(fmt.Sprintf("big.example. 60 IN A 192.0.2.%d", i)))
		}
		return m, nil
	}
	tests := []struct {
		name  string
		query *dns.Msg
		serve func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
		check func(t *testing.T, r *dns.Msg)
	}{
		{
			name:  "A",
			query: query("example.org.", dns.TypeA),
			serve: answerA,
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 1 || r.Answer[0].String() != mustRR("example.org. 60 IN A 192.0.2.1").String() {
					t.Errorf("answer = %v", r.Answer)
				}
			},
		},
		{
			name:  "AAAA",
			query: query("example.org.", dns.TypeAAAA),
			serve: func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m := new(dns.Msg)
				m.SetReply(req.Msg)
				m.Answer = []dns.RR{mustRR("example.org. 60 IN AAAA 2001:db8::1")}
				return m, nil
			},
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::1" {
					t.Errorf("answer = %v", r.Answer)
				}
			},
		},
		{
			name:  "answer larger than 1232 bytes is not truncated",
			query: queryEDNS("big.example.", dns.TypeA, 1232, false),
			serve: many,
			check: func(t *testing.T, r *dns.Msg) {
				if r.Truncated || len(r.Answer) != 120 || r.Len() <= EDNSSize {
					t.Errorf("TC=%v with %d answers in %d bytes", r.Truncated, len(r.Answer), r.Len())
				}
			},
		},
		{
			name:  "handler error is SERVFAIL",
			query: query("example.org.", dns.TypeA),
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) {
				return nil, &pipeline.Error{Text: "no"}
			},
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeServerFailure {
					t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
				}
			},
		},
		{
			name: "UPDATE is NOTIMP",
			query: func() *dns.Msg {
				q := query("example.org.", dns.TypeSOA)
				q.Opcode = dns.OpcodeUpdate
				return q
			}(),
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeNotImplemented {
					t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
				}
			},
		},
	}
	for _, f := range []family{fam4, fam6} {
		for _, tt := range tests {
			t.Run(f.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				l := startDoQ(t, testConfig(t, f, &fakeHandler{t: t, serve: tt.serve}))
				c := l.dial(t, "dns.test")
				q := tt.query.Copy()
				q.Id = 4242
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				r, err := c.Exchange(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if r.Id != 4242 || !r.Response {
					t.Errorf("reply ID %d QR %v, want 4242 and QR", r.Id, r.Response)
				}
				tt.check(t, r)
			})
		}
	}
}

// TestDoQStreamsOutOfOrder sends queries on concurrent streams of one
// connection; the handler answers them in reverse order of arrival, and
// each stream still gets its own answer.
func TestDoQStreamsOutOfOrder(t *testing.T) {
	t.Parallel()
	const n = 10
	release := make(map[string]chan struct{}, n)
	for i := range n {
		release[fmt.Sprintf("q%d.example.", i)] = make(chan struct{})
	}
	var arrived atomic.Int32
	order := make(chan string, n)
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		name := req.Question().Name
		order <- name
		if arrived.Add(1) == n {
			close(release[name]) // all are in flight: the last goes first
		}
		select {
		case <-release[name]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return answerA(ctx, req)
	}}
	l := startDoQ(t, testConfig(t, fam4, h))
	c := l.dial(t, "dns.test")
	type result struct {
		name string
		r    *dns.Msg
		err  error
	}
	results := make(chan result, n)
	for i := range n {
		name := fmt.Sprintf("q%d.example.", i)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r, err := c.Exchange(ctx, query(name, dns.TypeA))
			results <- result{name, r, err}
		}()
	}
	var arrival []string
	for range n {
		arrival = append(arrival, <-order)
	}
	for got := range n {
		res := <-results
		if res.err != nil {
			t.Fatalf("%s: %v", res.name, res.err)
		}
		if q := res.r.Question[0].Name; q != res.name {
			t.Errorf("stream for %s got the answer for %s", res.name, q)
		}
		if want := arrival[n-1-got]; res.name != want {
			t.Errorf("answer %d is for %s, want %s", got, res.name, want)
		}
		if got < n-1 {
			close(release[arrival[n-2-got]])
		}
	}
}

// TestDoQRequest checks the Request the listener builds: the client id
// from the SNI, the TLS state, addresses, size, and the Message ID 0 of
// the wire; and the metrics of one query.
func TestDoQRequest(t *testing.T) {
	t.Parallel()
	got := make(chan pipeline.Request, 1)
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		got <- *req
		return answerA(ctx, req)
	}}
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, fam4, h)
	cfg.ServerName = "dns.test"
	cfg.Metrics = NewMetrics(reg)
	l := startDoQ(t, cfg)
	c := l.dial(t, "alice.dns.test")
	q := query("example.org.", dns.TypeA)
	q.Id = 777
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Exchange(ctx, q); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if req.ClientID != "alice" || req.Listener != pipeline.KindDoQ || req.MaxSize != dns.MaxMsgSize {
		t.Errorf("ClientID %q Listener %v MaxSize %d", req.ClientID, req.Listener, req.MaxSize)
	}
	if req.Msg.Id != 0 {
		t.Errorf("query ID on the wire %d, want 0", req.Msg.Id)
	}
	if req.TLS == nil || req.TLS.ServerName != "alice.dns.test" || req.TLS.NegotiatedProtocol != "doq" {
		t.Errorf("TLS state %+v", req.TLS)
	}
	if req.Local != l.Addr() || req.Client.Addr() != l.Addr().Addr() || req.Client.Port() == 0 {
		t.Errorf("Local %v Client %v", req.Local, req.Client)
	}
	if req.Received.IsZero() {
		t.Error("Received not set")
	}
	labels := map[string]string{"listener": "doq", "rcode": "NOERROR"}
	for _, name := range []string{"dnsedge_listener_queries_total", "dnsedge_listener_responses_total"} {
		if v := metricValue(t, reg, name, labels); v != 1 {
			t.Errorf("%s = %v, want 1", name, v)
		}
	}
}

// TestDoQPadding checks that replies to EDNS queries are padded to the
// RFC 8467 block, and others are not touched.
func TestDoQPadding(t *testing.T) {
	t.Parallel()
	l := startDoQ(t, testConfig(t, fam4, &fakeHandler{t: t, serve: answerA}))
	c := l.dial(t, "dns.test")
	for _, tt := range []struct {
		name   string
		q      *dns.Msg
		padded bool
	}{
		{"edns", queryEDNS("example.org.", dns.TypeA, 1232, false), true},
		{"no edns", query("example.org.", dns.TypeA), false},
	} {
		tt.q.Id = 0
		b, err := rawExchange(c.Conn(), doqFrame(t, tt.q), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := len(b)%PaddingBlock == 0; got != tt.padded {
			t.Errorf("%s: reply of %d bytes, padded %v, want %v", tt.name, len(b), got, tt.padded)
		}
	}
}

// TestDoQProtocolErrors checks that each violation of RFC 9250 framing
// closes the connection with DOQ_PROTOCOL_ERROR (§4.3.3).
func TestDoQProtocolErrors(t *testing.T) {
	t.Parallel()
	good := func(t *testing.T) []byte { return doqFrame(t, query("example.org.", dns.TypeA)) }
	bidi := func(b []byte, fin bool) func(t *testing.T, c *quic.Conn) {
		return func(t *testing.T, c *quic.Conn) {
			s, err := c.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write(b)
			if fin {
				s.Close()
			}
		}
	}
	tests := []struct {
		name string
		send func(t *testing.T, c *quic.Conn)
	}{
		{"non-zero message ID", func(t *testing.T, c *quic.Conn) {
			q := query("example.org.", dns.TypeA)
			q.Id = 0x1234
			bidi(doqFrame(t, q), true)(t, c)
		}},
		{"data after the message", func(t *testing.T, c *quic.Conn) { bidi(append(good(t), good(t)...), true)(t, c) }},
		{"zero length", bidi([]byte{0, 0}, true)},
		{"truncated message then FIN", func(t *testing.T, c *quic.Conn) { bidi(good(t)[:10], true)(t, c) }},
		{"FIN without a message", bidi(nil, true)},
		{"FIN inside the length", bidi([]byte{0}, true)},
		{"response instead of a query", func(t *testing.T, c *quic.Conn) {
			q := query("example.org.", dns.TypeA)
			q.Id, q.Response = 0, true
			bidi(doqFrame(t, q), true)(t, c)
		}},
		{"edns-tcp-keepalive", func(t *testing.T, c *quic.Conn) {
			q := queryEDNS("example.org.", dns.TypeA, 1232, false)
			q.Id = 0
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE})
			bidi(doqFrame(t, q), true)(t, c)
		}},
		{"unidirectional stream", func(t *testing.T, c *quic.Conn) {
			s, err := c.OpenUniStream()
			if err != nil {
				t.Fatal(err)
			}
			s.Write(good(t))
			s.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			cfg := testConfig(t, fam4, &fakeHandler{t: t})
			cfg.Metrics = NewMetrics(reg)
			l := startDoQ(t, cfg)
			c := l.dial(t, "dns.test")
			tt.send(t, c.Conn())
			code, cause := closedWith(c.Conn(), 5*time.Second)
			if code != doqProtocolError {
				t.Fatalf("connection closed with %d (%v), want DOQ_PROTOCOL_ERROR", code, cause)
			}
			if eventually(time.Second, func() bool { return l.openConnCount() == 0 }) == false {
				t.Error("listener still holds the connection")
			}
		})
	}
}

// TestDoQCloseAnswersInFlight closes the listener while a query is being
// served: the query is answered, the connection is then closed with
// DOQ_NO_ERROR, and no listener goroutine is left.
func TestDoQCloseAnswersInFlight(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		close(entered)
		<-release
		return answerA(ctx, req)
	}}
	pki := testTLS(t)
	cfg := testConfig(t, fam4, h)
	cfg.TLS = pki.server
	l, err := ListenDoQ(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	c := doqServer{l, pki}.dial(t, "dns.test")
	answered := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Exchange(ctx, query("example.org.", dns.TypeA))
		answered <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	if !eventually(2*time.Second, l.isClosed) {
		t.Fatal("Close did not start")
	}
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("query in flight at Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	if code, cause := closedWith(c.Conn(), 5*time.Second); code != doqNoError {
		t.Errorf("connection closed with %d (%v), want DOQ_NO_ERROR", code, cause)
	}
	if !eventually(2*time.Second, func() bool { s, c := doqGoroutines(); return s+c == 0 }) {
		s, c := doqGoroutines()
		t.Errorf("%d stream and %d connection goroutines left", s, c)
	}
	if err := l.Serve(); err == nil {
		t.Error("Serve after Close returned nil")
	}
}
