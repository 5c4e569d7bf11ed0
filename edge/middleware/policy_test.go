package middleware

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/policy"
)

// TestPolicyStageDoesNotAllocate: deciding a query that matches a split
// costs the stage no allocation (the decision's input stays on the
// stack), so that a policy's cost per query is the decision alone. A
// name in mixed case costs one: its lower-case copy.
func TestPolicyStageDoesNotAllocate(t *testing.T) {
	p, err := policy.Load("p.yaml", []byte(`version: v1
rules:
  - {name: api, match: {qname_prefix: ["api."], listener: [doh]}, route: canary}
  - {name: half, match: {source: [127.0.0.0/8]}, split: {percent: 50, canary: canary, base: default}}
`))
	if err != nil {
		t.Fatal(err)
	}
	ans := new(dns.Msg)
	h := NewPolicy(p).Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return ans, nil }))
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	base := pipeline.Request{Msg: q, Client: netip.MustParseAddrPort("127.0.0.1:5353"), Listener: pipeline.KindTCP}
	req := new(pipeline.Request)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(200, func() {
		*req = base
		if _, err := h.ServeDNS(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	if req.Outcome.Rule != "half" || req.Route == "" {
		t.Fatalf("rule %q route %q: the query missed the split", req.Outcome.Rule, req.Route)
	}
	if allocs != 0 {
		t.Errorf("the policy stage allocates %v times per query", allocs)
	}
}
