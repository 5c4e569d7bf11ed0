package middleware

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/bench/benchpolicy"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
)

// benchPolicy returns make bench's policy of n rules (rules over every
// dimension that the benchmark's queries miss, and a last one, a percent
// split over loopback, that they all match).
func benchPolicy(tb testing.TB, n int) *policy.Policy {
	tb.Helper()
	var b strings.Builder
	if err := benchpolicy.Write(&b, n); err != nil {
		tb.Fatal(err)
	}
	p, err := policy.Load("bench.yaml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkPolicyStage measures the policy stage of a 1,000-rule policy
// on queries over UDP (no connection memo) and TCP (one), each matching
// the last rule.
func BenchmarkPolicyStage(b *testing.B) {
	p := benchPolicy(b, 1000)
	h := NewPolicy(p, "default").Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return nil, nil }))
	qs := make([]*dns.Msg, 1000)
	for i := range qs {
		qs[i] = new(dns.Msg).SetQuestion(fmt.Sprintf("h%d.bench.test.", i), dns.TypeA)
	}
	for _, tc := range []struct {
		name string
		kind pipeline.Kind
		memo *pipeline.ConnMemo
	}{{"udp", pipeline.KindUDP, nil}, {"tcp", pipeline.KindTCP, new(pipeline.ConnMemo)}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			req := new(pipeline.Request)
			client := netip.MustParseAddrPort("127.0.0.1:5353")
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				*req = pipeline.Request{Msg: qs[i%len(qs)], Client: client, Listener: tc.kind, Conn: tc.memo}
				h.ServeDNS(ctx, req)
				i++
			}
			if req.Outcome.Rule != "loopback-half" {
				b.Fatalf("rule %q: the query missed the split", req.Outcome.Rule)
			}
		})
	}
}
