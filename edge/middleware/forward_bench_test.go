package middleware

import (
	"context"
	"net/netip"
	"testing"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// BenchmarkForwardCarry is the forward path (upstream query built, group
// raced, answer returned) to an exchanger that answers at once, without
// and with what a query carries upstream: the cost of the ECS, tag and
// trace options is the difference.
func BenchmarkForwardCarry(b *testing.B) {
	reply := new(dns.Msg)
	ex := &nopExchanger{reply: reply}
	cases := []struct {
		name  string
		ecs   string
		tags  []string
		trace string
	}{
		{"plain", "", nil, ""},
		{"ecs+tags", "192.0.2.0/24", []string{"env=prod", "stage=canary"}, ""},
		{"ecs+tags+trace", "192.0.2.0/24", []string{"env=prod", "stage=canary"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			f := forwardTo(b, ex, nil)
			req := request(dns.TypeA, true, false, false)
			req.Tags, req.TraceID = tc.tags, tc.trace
			if tc.ecs != "" {
				req.ECS = netip.MustParsePrefix(tc.ecs)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.ServeDNS(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// nopExchanger packs every query, as a real exchanger does before it
// sends, and answers it at once.
type nopExchanger struct{ reply *dns.Msg }

func (n *nopExchanger) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	var buf [512]byte
	if _, err := transport.PackQuery(q, buf[:]); err != nil {
		return nil, err
	}
	m := *n.reply
	m.Id = q.Id
	m.Response = true
	m.Question = q.Question
	return &m, nil
}
func (n *nopExchanger) Close() error { return nil }

// BenchmarkUpstreamQuery is the part of the forward path the carried
// options change: building the upstream query, with the context of a
// DoH upstream's Meta when there are tags or a trace id, and packing it.
func BenchmarkUpstreamQuery(b *testing.B) {
	for _, tc := range []struct {
		name  string
		ecs   string
		tags  []string
		trace string
	}{
		{"plain", "", nil, ""},
		{"trace", "", nil, "4bf92f3577b34da6a3ce929d0e0e4736"}, // the default
		{"ecs+tags", "192.0.2.0/24", []string{"env=prod", "stage=canary"}, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := forwardTo(b, &nopExchanger{reply: new(dns.Msg)}, nil)
			req := request(dns.TypeA, true, false, false)
			req.Tags, req.TraceID = tc.tags, tc.trace
			if tc.ecs != "" {
				req.ECS = netip.MustParsePrefix(tc.ecs)
			}
			var buf [512]byte
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if len(req.Tags) > 0 {
					_ = transport.WithQueryMeta(ctx, transport.Meta{Tags: req.Tags})
				}
				if _, err := f.upstreamQuery(req).PackBuffer(buf[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
