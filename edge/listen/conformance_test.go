package listen

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestServing runs every listener kind, on both families, through the same
// cases (miekg/dns TestServing).
func TestServing(t *testing.T) {
	t.Parallel()
	const noReplyWait = 300 * time.Millisecond
	tests := []struct {
		name  string
		query *dns.Msg
		serve func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
		check func(t *testing.T, r *dns.Msg, err error)
		// then, when set, runs after check, e.g. a follow-up query.
		then func(t *testing.T, netw string, s server)
	}{
		{
			name:  "answer",
			query: query("example.org.", dns.TypeA),
			serve: answerA,
			check: func(t *testing.T, r *dns.Msg, err error) {
				wantRcode(t, r, err, dns.RcodeSuccess)
				if len(r.Answer) != 1 || r.Answer[0].String() != mustRR("example.org. 60 IN A 192.0.2.1").String() {
					t.Errorf("answer = %v", r.Answer)
				}
				if len(r.Question) != 1 || r.Question[0].Name != "example.org." {
					t.Errorf("question = %v", r.Question)
				}
			},
		},
		{
			name:  "handler error with EDE",
			query: queryEDNS("example.org.", dns.TypeA, 1232, false),
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) {
				return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Text: "all paths failed"}
			},
			check: func(t *testing.T, r *dns.Msg, err error) {
				wantRcode(t, r, err, dns.RcodeServerFailure)
				ede := edeOf(r)
				if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority || ede.ExtraText != "all paths failed" {
					t.Errorf("EDE = %v, want %d %q", ede, dns.ExtendedErrorCodeNoReachableAuthority, "all paths failed")
				}
				if len(r.Question) != 1 {
					t.Errorf("question not echoed: %v", r.Question)
				}
			},
		},
		{
			// RFC 4035 §3.1.6 and RFC 6840 §5.8: a handler whose answer
			// drops CD and sets AD for a client that asked neither DO nor
			// AD; the client gets CD back and no AD.
			name: "CD copied, AD cleared without DO or AD",
			query: func() *dns.Msg {
				q := query("example.org.", dns.TypeA)
				q.CheckingDisabled = true
				return q
			}(),
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, err := answerA(ctx, req)
				m.CheckingDisabled, m.AuthenticatedData = false, true
				return m, err
			},
			check: func(t *testing.T, r *dns.Msg, err error) {
				wantRcode(t, r, err, dns.RcodeSuccess)
				if !r.CheckingDisabled || r.AuthenticatedData {
					t.Errorf("CD=%v AD=%v, want CD=true AD=false", r.CheckingDisabled, r.AuthenticatedData)
				}
			},
		},
		{
			name:  "drop sends nothing",
			query: query("example.org.", dns.TypeA),
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) {
				return nil, pipeline.ErrDrop
			},
			check: func(t *testing.T, r *dns.Msg, err error) {
				if !isTimeout(err) {
					t.Errorf("got %v, %v; want a timeout", r, err)
				}
			},
		},
		{
			name:  "nil answer and nil error is SERVFAIL",
			query: query("example.org.", dns.TypeA),
			serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) { return nil, nil },
			check: func(t *testing.T, r *dns.Msg, err error) { wantRcode(t, r, err, dns.RcodeServerFailure) },
		},
		{
			name:  "answer that does not pack is SERVFAIL",
			query: query("example.org.", dns.TypeA),
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, _ := answerA(ctx, req)
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "bad..name.", Rrtype: dns.TypeA, Class: dns.ClassINET}})
				return m, nil
			},
			check: func(t *testing.T, r *dns.Msg, err error) { wantRcode(t, r, err, dns.RcodeServerFailure) },
		},
		{
			name:  "panic is SERVFAIL and the listener lives on",
			query: query("panic.example.", dns.TypeA),
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				if req.Question().Name == "panic.example." {
					panic("boom")
				}
				return answerA(ctx, req)
			},
			check: func(t *testing.T, r *dns.Msg, err error) { wantRcode(t, r, err, dns.RcodeServerFailure) },
			then: func(t *testing.T, netw string, s server) {
				r, err := exchange(netw, s.Addr(), query("example.org.", dns.TypeA), 2*time.Second)
				wantRcode(t, r, err, dns.RcodeSuccess)
			},
		},
		{
			name:  "client without EDNS gets no OPT",
			query: query("example.org.", dns.TypeA),
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, _ := answerA(ctx, req)
				m.SetEdns0(4096, true) // as an upstream would answer
				return m, nil
			},
			check: func(t *testing.T, r *dns.Msg, err error) {
				wantRcode(t, r, err, dns.RcodeSuccess)
				if opt := r.IsEdns0(); opt != nil {
					t.Errorf("reply has OPT %v", opt)
				}
			},
		},
		{
			name:  "EDNS client gets one OPT with DO echoed",
			query: queryEDNS("example.org.", dns.TypeA, 4096, true),
			serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				m, _ := answerA(ctx, req)
				opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
				opt.SetUDPSize(4096)
				opt.Option = []dns.EDNS0{
					&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708090a0b0c0d0e0f10"},
					&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer},
					&dns.EDNS0_PADDING{Padding: make([]byte, 16)},
				}
				m.Extra = append(m.Extra, opt, opt) // and a duplicate
				return m, nil
			},
			check: func(t *testing.T, r *dns.Msg, err error) {
				wantRcode(t, r, err, dns.RcodeSuccess)
				var opts []*dns.OPT
				for _, rr := range r.Extra {
					if o, ok := rr.(*dns.OPT); ok {
						opts = append(opts, o)
					}
				}
				if len(opts) != 1 {
					t.Fatalf("reply has %d OPT records, want 1", len(opts))
				}
				opt := opts[0]
				if !opt.Do() || opt.UDPSize() != EDNSSize {
					t.Errorf("OPT DO=%v size=%d, want DO and %d", opt.Do(), opt.UDPSize(), EDNSSize)
				}
				for _, o := range opt.Option {
					switch o.(type) {
					case *dns.EDNS0_EDE:
					case *dns.EDNS0_PADDING:
						// Encrypted listeners pad to whole blocks
						// themselves; anything else is a leak.
						if r.Len()%PaddingBlock != 0 {
							t.Errorf("padding to %d bytes passed to the client", r.Len())
						}
					default:
						t.Errorf("option %T passed to the client", o)
					}
				}
				if ede := edeOf(r); ede == nil || ede.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
					t.Errorf("EDE = %v, want Stale Answer", ede)
				}
			},
		},
	}
	for _, kind := range []string{"udp", "tcp", "dot"} {
		for _, f := range []family{fam4, fam6} {
			for _, tt := range tests {
				t.Run(kind+"/"+f.name+"/"+tt.name, func(t *testing.T) {
					t.Parallel()
					needFamily(t, f)
					s := start(t, kind, testConfig(t, f, &fakeHandler{t: t, serve: tt.serve}))
					timeout := 2 * time.Second
					if strings.HasPrefix(tt.name, "drop") {
						timeout = noReplyWait
					}
					r, err := exchange(kind, s.Addr(), tt.query, timeout)
					if err == nil && r.Id != tt.query.Id {
						t.Errorf("reply ID %d, want %d", r.Id, tt.query.Id)
					}
					if err == nil && !r.Response {
						t.Error("reply without QR")
					}
					tt.check(t, r, err)
					if tt.then != nil {
						tt.then(t, kind, s)
					}
				})
			}
		}
	}
}

// TestPanicLogged checks that a panic is logged at error level with its
// stack and counted.
func TestPanicLogged(t *testing.T) {
	t.Parallel()
	rec := &logRecorder{}
	h := &fakeHandler{t: t, serve: func(context.Context, *pipeline.Request) (*dns.Msg, error) { panic("boom") }}
	cfg := testConfig(t, fam4, h)
	cfg.Logger = slog.New(rec)
	s := start(t, "udp", cfg)
	r, err := exchange("udp", s.Addr(), query("example.org.", dns.TypeA), 2*time.Second)
	wantRcode(t, r, err, dns.RcodeServerFailure)
	attrs, ok := rec.find(slog.LevelError, "panic serving query")
	if !ok {
		t.Fatal("panic not logged at error level")
	}
	if attrs["panic"] != "boom" || !strings.Contains(attrs["stack"], "TestPanicLogged") {
		t.Errorf("panic log attrs = %v", attrs)
	}
}

func wantRcode(t *testing.T, r *dns.Msg, err error, rcode int) {
	t.Helper()
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if r.Rcode != rcode {
		t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode])
	}
}

func edeOf(m *dns.Msg) *dns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			return e
		}
	}
	return nil
}

// TestRequestFields checks the Request each listener builds and the
// metrics of one answered query.
func TestRequestFields(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"udp", "tcp"} {
		for _, f := range []family{fam4, fam6} {
			t.Run(kind+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				needFamily(t, f)
				type seen struct {
					req      pipeline.Request
					deadline time.Duration
				}
				got := make(chan seen, 1)
				h := &fakeHandler{t: t, serve: func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
					d, _ := ctx.Deadline()
					got <- seen{*req, time.Until(d)}
					return answerA(ctx, req)
				}}
				reg := prometheus.NewRegistry()
				cfg := testConfig(t, f, h)
				cfg.Metrics = NewMetrics(reg)
				cfg.QueryTimeout = time.Minute
				s := start(t, kind, cfg)
				r, err := exchange(kind, s.Addr(), queryEDNS("example.org.", dns.TypeA, 4096, false), 2*time.Second)
				wantRcode(t, r, err, dns.RcodeSuccess)
				sn := <-got
				req := sn.req
				wantKind, wantSize := pipeline.KindUDP, EDNSSize // the client's 4096, capped
				if kind == "tcp" {
					wantKind, wantSize = pipeline.KindTCP, dns.MaxMsgSize
				}
				if req.Listener != wantKind || req.MaxSize != wantSize {
					t.Errorf("Listener %v MaxSize %d, want %v %d", req.Listener, req.MaxSize, wantKind, wantSize)
				}
				if req.Local != s.Addr() || req.Client.Addr() != s.Addr().Addr() || req.Client.Port() == 0 {
					t.Errorf("Local %v Client %v, want %v and a loopback client", req.Local, req.Client, s.Addr())
				}
				if req.Received.IsZero() || time.Since(req.Received) > time.Minute {
					t.Errorf("Received %v", req.Received)
				}
				if sn.deadline <= 50*time.Second || sn.deadline > time.Minute {
					t.Errorf("ctx deadline in %v, want about the QueryTimeout of 1m", sn.deadline)
				}
				for name, want := range map[string]float64{
					"dnsedge_listener_queries_total":   1,
					"dnsedge_listener_responses_total": 1,
				} {
					labels := map[string]string{"listener": kind, "rcode": "NOERROR"}
					if v := metricValue(t, reg, name, labels); v != want {
						t.Errorf("%s%v = %v, want %v", name, labels, v, want)
					}
				}
			})
		}
	}
}
