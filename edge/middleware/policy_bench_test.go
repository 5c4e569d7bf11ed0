package middleware

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
)

// benchPolicy returns a policy of n rules shaped like make bench's policy
// row: rules over every dimension that the benchmark's queries miss, and
// a last one, a percent split over loopback, that they all match.
func benchPolicy(tb testing.TB, n int) *policy.Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString("version: bench\nrules:\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {", i)
		switch i % 7 {
		case 0:
			fmt.Fprintf(&b, "source: [10.%d.%d.0/24]", i/256%256, i%256)
		case 1:
			fmt.Fprintf(&b, "client_id: [client-%d]", i)
		case 2:
			fmt.Fprintf(&b, "qname_prefix: [\"svc-%d.\"]", i)
		case 3:
			fmt.Fprintf(&b, "qname_suffix: [zone-%d.example], qtype: [A, AAAA]", i)
		case 4:
			fmt.Fprintf(&b, "source: [\"2001:db8:%x::/48\"], listener: [doh]", i)
		case 5:
			fmt.Fprintf(&b, "tags: [\"team=t%d\"]", i)
		case 6:
			fmt.Fprintf(&b, "qname_suffix: [corp-%d.example], client_id: [c-%d]", i, i)
		}
		b.WriteString("}\n    route: canary\n")
	}
	b.WriteString("  - name: loopback-half\n    match: {source: [127.0.0.0/8]}\n    split: {percent: 50, canary: canary, base: default}\n")
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
