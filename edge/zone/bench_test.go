package zone

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkMiddlewareNoMatch measures what the zones stage adds to a query
// none of its zones contains: the cost every forwarded query pays.
func BenchmarkMiddlewareNoMatch(b *testing.B) {
	answer := new(dns.Msg)
	next := pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return answer, nil })
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{name: "no zones", cfg: Config{}},
		{name: "shared and tenants", cfg: tenantConfig},
	} {
		b.Run(bc.name, func(b *testing.B) {
			z, err := New(bc.cfg, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer z.Close()
			h := z.Middleware()(next)
			req := request("www.example.org.", dns.TypeA, "10.1.2.3", "")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if m, err := h.ServeDNS(ctx, req); m != answer || err != nil {
					b.Fatal(m, err)
				}
			}
		})
	}
}

func BenchmarkAnswer(b *testing.B) {
	z := mustParse(b, "example.", exampleZone)
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
		do    bool
	}{
		{name: "exact", qname: "www.example.", qtype: dns.TypeA},
		{name: "exact DO", qname: "www.example.", qtype: dns.TypeA, do: true},
		{name: "CNAME chain", qname: "chain1.example.", qtype: dns.TypeA},
		{name: "wildcard", qname: "host.wild.example.", qtype: dns.TypeA},
		{name: "NXDOMAIN", qname: "nope.example.", qtype: dns.TypeA},
		{name: "referral", qname: "host.deleg.example.", qtype: dns.TypeA},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := query(bc.qname, bc.qtype, bc.do)
			b.ReportAllocs()
			for b.Loop() {
				z.Answer(q)
			}
		})
	}
}
