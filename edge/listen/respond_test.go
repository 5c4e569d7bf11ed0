package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func TestFinish(t *testing.T) {
	t.Parallel()
	plain := query("example.org.", dns.TypeA)
	edns := queryEDNS("example.org.", dns.TypeA, 1232, true)
	answer := func(q *dns.Msg) *dns.Msg {
		m, _ := answerA(context.Background(), &pipeline.Request{Msg: q})
		return m
	}
	tsig := &dns.TSIG{Hdr: dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.HmacSHA256, MAC: "00", OrigId: 1}
	tests := []struct {
		name  string
		query *dns.Msg
		m     func(q *dns.Msg) *dns.Msg
		err   error
		send  bool
		check func(t *testing.T, r *dns.Msg)
	}{
		{name: "wrapped drop", query: plain, err: fmt.Errorf("policy: %w", pipeline.ErrDrop)},
		{name: "error", query: edns, err: errors.New("boom"), send: true, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeServerFailure || edeOf(r) == nil || r.IsEdns0().UDPSize() != EDNSSize {
				t.Errorf("reply %v", r)
			}
		}},
		{name: "refused error", query: plain, err: &pipeline.Error{Rcode: dns.RcodeRefused}, send: true, check: func(t *testing.T, r *dns.Msg) {
			if r.Rcode != dns.RcodeRefused || r.IsEdns0() != nil {
				t.Errorf("reply %v", r)
			}
		}},
		{name: "question restored, ID and QR set", query: plain, send: true,
			m: func(q *dns.Msg) *dns.Msg {
				m := answer(q)
				m.Question, m.Id, m.Response = nil, q.Id+1, false
				return m
			},
			check: func(t *testing.T, r *dns.Msg) {
				if len(r.Question) != 1 || r.Id != plain.Id || !r.Response {
					t.Errorf("reply %v", r)
				}
			}},
		{name: "OPT goes before TSIG", query: edns, send: true,
			m: func(q *dns.Msg) *dns.Msg {
				m := answer(q)
				m.Extra = append(m.Extra, tsig)
				return m
			},
			check: func(t *testing.T, r *dns.Msg) {
				if n := len(r.Extra); n != 2 || r.Extra[0].Header().Rrtype != dns.TypeOPT || r.Extra[1] != tsig {
					t.Errorf("additional section %v", r.Extra)
				}
			}},
		{name: "extended rcode without client EDNS", query: plain, send: true,
			m: func(q *dns.Msg) *dns.Msg {
				m := answer(q)
				m.Rcode = dns.RcodeBadCookie
				m.SetEdns0(1232, false)
				return m
			},
			check: func(t *testing.T, r *dns.Msg) {
				if r.Rcode != dns.RcodeServerFailure {
					t.Errorf("rcode %d", r.Rcode)
				}
				if _, err := r.Pack(); err != nil {
					t.Error(err)
				}
			}},
		{name: "extended rcode with client EDNS", query: edns, send: true,
			m: func(q *dns.Msg) *dns.Msg {
				m := answer(q)
				m.Rcode = dns.RcodeBadCookie
				return m
			},
			check: func(t *testing.T, r *dns.Msg) {
				b, err := r.Pack()
				if err != nil {
					t.Fatal(err)
				}
				back := new(dns.Msg)
				if err := back.Unpack(b); err != nil || back.Rcode != dns.RcodeBadCookie {
					t.Errorf("rcode after the wire %d, %v", back.Rcode, err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &pipeline.Request{Msg: tt.query, MaxSize: 512}
			var m *dns.Msg
			var before string
			if tt.m != nil {
				m = tt.m(tt.query)
				before = m.String()
			}
			r, send := Finish(req, m, tt.err, slog.New(slog.DiscardHandler))
			if send != tt.send {
				t.Fatalf("send = %v, want %v", send, tt.send)
			}
			if m != nil && m.String() != before {
				t.Errorf("Finish changed the handler's message:\n%s\nwas\n%s", m, before)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestFinishADCD checks the header bits every listener sends in the
// manner of ISC's EDNS compliance tester (genreport): for each mix of DO,
// AD and CD in the query, whatever the handler set, CD is the query's
// (RFC 4035 §3.1.6) and AD survives only when the query had DO or AD
// (RFC 6840 §5.8). Error replies follow the same rules.
func TestFinishADCD(t *testing.T) {
	t.Parallel()
	for _, do := range []bool{false, true} {
		for _, ad := range []bool{false, true} {
			for _, cd := range []bool{false, true} {
				for _, handlerAD := range []bool{false, true} {
					for _, fail := range []bool{false, true} {
						name := fmt.Sprintf("do=%v/ad=%v/cd=%v/handler_ad=%v/error=%v", do, ad, cd, handlerAD, fail)
						t.Run(name, func(t *testing.T) {
							t.Parallel()
							q := queryEDNS("example.org.", dns.TypeA, 1232, do)
							q.AuthenticatedData, q.CheckingDisabled = ad, cd
							req := &pipeline.Request{Msg: q, MaxSize: 1232}
							var m *dns.Msg
							var err error
							if fail {
								err = errors.New("boom")
							} else {
								m, _ = answerA(context.Background(), req)
								m.AuthenticatedData, m.CheckingDisabled = handlerAD, !cd
							}
							r, _ := Finish(req, m, err, nil)
							if r.CheckingDisabled != cd {
								t.Errorf("CD = %v, want the query's %v", r.CheckingDisabled, cd)
							}
							wantAD := handlerAD && !fail && (do || ad)
							if r.AuthenticatedData != wantAD {
								t.Errorf("AD = %v, want %v", r.AuthenticatedData, wantAD)
							}
						})
					}
				}
			}
		}
	}
}

// TestCheck pins the decision on small hand-made messages, including
// inputs found by fuzzing.
func TestCheck(t *testing.T) {
	t.Parallel()
	good, _ := query("example.org.", dns.TypeA).Pack()
	tests := []struct {
		name string
		in   []byte
		want action
	}{
		{"empty", nil, actDrop},
		{"eleven bytes", good[:11], actDrop},
		{"response", append([]byte{0, 1, 0x80, 0}, good[4:]...), actDrop},
		{"query", good, actServe},
		{"notify", append([]byte{0, 1, 0x20, 0}, good[4:]...), actNotImp},
		{"truncated question", good[:len(good)-1], actFormErr},
		{"trailing garbage", append(append([]byte{}, good...), 1, 2, 3), actServe},
		{"question pointing at itself", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, actFormErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, got, _ := check(tt.in)
			if got != tt.want {
				t.Fatalf("check = %v, want %v", got, tt.want)
			}
			if got == actServe && (m == nil || len(m.Question) != 1) {
				t.Errorf("served message %v", m)
			}
		})
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, b := NewMetrics(reg), NewMetrics(reg)
	a.kind(pipeline.KindUDP).query()
	b.kind(pipeline.KindUDP).query()
	if got := metricValue(t, reg, "dnsedge_listener_queries_total", map[string]string{"listener": "udp"}); got != 2 {
		t.Errorf("queries_total = %v, want 2", got)
	}
	var none *Metrics
	none.kind(pipeline.KindUDP).query() // a nil Metrics records nothing
}
