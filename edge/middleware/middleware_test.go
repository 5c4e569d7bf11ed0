package middleware

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// capture is an exchanger that records the query it was sent.
type capture struct {
	got   *dns.Msg
	meta  *transport.Meta // the Meta of the query's context
	reply func(q *dns.Msg) (*dns.Msg, error)
}

func (c *capture) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	c.got = q.Copy()
	c.meta = transport.QueryMeta(ctx)
	return c.reply(q)
}
func (c *capture) Close() error { return nil }

func forwardTo(t testing.TB, ex transport.Exchanger, loop *Loop) *Forward {
	t.Helper()
	return forwardOver(t, "udp", ex, loop)
}

// forwardOver is forwardTo with an upstream of scheme (udp, https ...),
// whose every path is ex.
func forwardOver(t testing.TB, scheme string, ex transport.Exchanger, loop *Loop) *Forward {
	t.Helper()
	ep := transport.Endpoint{Scheme: scheme, Addr: netip.MustParseAddr("192.0.2.1"), Port: 53}
	if scheme == "https" {
		ep.Port, ep.Path = 443, "/dns-query"
	}
	up, err := transport.NewUpstream(transport.UpstreamConfig{Name: "u", Endpoint: ep},
		transport.UpstreamDeps{Registry: transport.NewRegistry(transport.HealthConfig{}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	up.Paths()[0].Exchanger = ex
	if st := up.Paths()[0].Stream; st != nil {
		st.Exchanger = ex // later rounds go over TCP
	}
	s, _ := transport.NewStrategy("sequential")
	g := transport.NewGroup("default", s, transport.RaceConfig{}, up)
	f, err := NewForward(map[string]*transport.Group{"default": g}, "default", loop, Carry{TagCode: DefaultTagOptionCode, TraceCode: DefaultTraceOptionCode})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func request(qtype uint16, edns, do, cd bool, opts ...dns.EDNS0) *pipeline.Request {
	q := new(dns.Msg)
	q.SetQuestion("example.org.", qtype)
	q.CheckingDisabled = cd
	if edns {
		q.SetEdns0(4096, do)
		q.IsEdns0().Option = append(q.IsEdns0().Option, opts...)
	}
	return &pipeline.Request{Msg: q, Listener: pipeline.KindUDP}
}

func TestForwardUpstreamQuery(t *testing.T) {
	loop := NewLoop(slog.New(slog.DiscardHandler))
	other := &dns.EDNS0_LOCAL{Code: LoopOptionCode, Data: []byte("another1")}
	cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
	tests := []struct {
		name      string
		req       *pipeline.Request
		wantDO    bool
		wantCD    bool
		wantMarks int // loop marks on the upstream query, ours included
	}{
		{"no EDNS from the client", request(dns.TypeA, false, false, false), false, false, 1},
		{"DO and CD carried", request(dns.TypeAAAA, true, true, true), true, true, 1},
		{"client options dropped, other instances' marks kept", request(dns.TypeA, true, false, false, cookie, other), false, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &capture{reply: func(q *dns.Msg) (*dns.Msg, error) {
				m := new(dns.Msg)
				m.SetReply(q)
				return m, nil
			}}
			f := forwardTo(t, ex, loop)
			before := tt.req.Msg.String()
			if _, err := f.ServeDNS(context.Background(), tt.req); err != nil {
				t.Fatal(err)
			}
			opt := ex.got.IsEdns0()
			if opt == nil || opt.UDPSize() != transport.EDNSBufferSize {
				t.Fatalf("upstream query OPT = %v, want buffer %d", opt, transport.EDNSBufferSize)
			}
			if opt.Do() != tt.wantDO || ex.got.CheckingDisabled != tt.wantCD {
				t.Fatalf("DO=%v CD=%v, want %v %v", opt.Do(), ex.got.CheckingDisabled, tt.wantDO, tt.wantCD)
			}
			marks := 0
			for _, o := range opt.Option {
				switch o.(type) {
				case *dns.EDNS0_LOCAL:
					marks++
				default:
					t.Fatalf("client option %v forwarded", o)
				}
			}
			if marks != tt.wantMarks {
				t.Fatalf("%d loop marks, want %d", marks, tt.wantMarks)
			}
			if tt.req.Msg.String() != before {
				t.Fatal("the client's query was modified")
			}
		})
	}
}

func TestForwardErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantEDE uint16
	}{
		{"every path timed out", &transport.ExchangeError{Class: transport.ClassTimeout, Err: context.DeadlineExceeded}, dns.ExtendedErrorCodeNoReachableAuthority},
		{"network refused", &transport.ExchangeError{Class: transport.ClassNetwork, Err: errors.New("connection refused")}, dns.ExtendedErrorCodeNetworkError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := forwardTo(t, &capture{reply: func(*dns.Msg) (*dns.Msg, error) { return nil, tt.err }}, nil)
			_, err := f.ServeDNS(context.Background(), request(dns.TypeA, true, false, false))
			var pe *pipeline.Error
			if !errors.As(err, &pe) || pe.EDE != tt.wantEDE {
				t.Fatalf("err = %v, want a pipeline.Error with EDE %d", err, tt.wantEDE)
			}
		})
	}
	f := forwardTo(t, &capture{}, nil)
	req := request(dns.TypeA, false, false, false)
	req.Route = "nope"
	if _, err := f.ServeDNS(context.Background(), req); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown route: %v", err)
	}
}

func TestLoopGuard(t *testing.T) {
	var logs bytes.Buffer
	loop := NewLoop(slog.New(slog.NewJSONHandler(&logs, nil)))
	next := pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return new(dns.Msg), nil })
	h := loop.Middleware(next)
	tests := []struct {
		name     string
		opts     []dns.EDNS0
		wantLoop bool
	}{
		{"no marks", nil, false},
		{"another instance's mark", []dns.EDNS0{&dns.EDNS0_LOCAL{Code: LoopOptionCode, Data: []byte("someone!")}}, false},
		{"our own mark", []dns.EDNS0{loop.option()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.ServeDNS(context.Background(), request(dns.TypeA, true, false, false, tt.opts...))
			if got := errors.Is(err, ErrLoop); got != tt.wantLoop {
				t.Fatalf("loop = %v (err %v), want %v", got, err, tt.wantLoop)
			}
		})
	}
	if !strings.Contains(logs.String(), "forwarding loop detected") {
		t.Fatal("loop not logged")
	}
}

func TestQueryLog(t *testing.T) {
	var logs bytes.Buffer
	ql := NewQueryLog(slog.New(slog.NewJSONHandler(&logs, nil)))
	h := ql.Middleware(pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetRcode(req.Msg, dns.RcodeNameError)
		return m, nil
	}))
	req := request(dns.TypeAAAA, false, false, false)
	req.ClientID = "phone-1"
	if _, err := h.ServeDNS(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"example.org."`, `"type":"AAAA"`, `"rcode":"NXDOMAIN"`, `"client_id":"phone-1"`, `"listener":"udp"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("query log lacks %s: %s", want, logs.String())
		}
	}
}
