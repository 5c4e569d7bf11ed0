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
	h := NewPolicy(p, "default").Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return ans, nil }))
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
	if req.Outcome.Rule != "half" {
		t.Fatalf("rule %q route %q: the query missed the split", req.Outcome.Rule, req.Route)
	}
	if allocs != 0 {
		t.Errorf("the policy stage allocates %v times per query", allocs)
	}
}

// TestPolicyDefaultRoute: a route to the default group leaves the route
// empty, as for a query no rule routes (one cache partition for the
// group); a route to another group is kept.
func TestPolicyDefaultRoute(t *testing.T) {
	p, err := policy.Load("p.yaml", []byte(`version: v1
rules:
  - {name: to-default, match: {qname_suffix: [d.example]}, route: default}
  - {name: to-canary, match: {qname_suffix: [c.example]}, route: canary}
`))
	if err != nil {
		t.Fatal(err)
	}
	h := NewPolicy(p, "default").Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return new(dns.Msg), nil }))
	for _, tt := range []struct{ name, rule, route string }{
		{"www.d.example.", "to-default", ""},
		{"www.c.example.", "to-canary", "canary"},
		{"www.example.org.", "", ""},
	} {
		q := new(dns.Msg)
		q.SetQuestion(tt.name, dns.TypeA)
		req := &pipeline.Request{Msg: q, Client: netip.MustParseAddrPort("127.0.0.1:5353"), Listener: pipeline.KindUDP}
		if _, err := h.ServeDNS(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if req.Outcome.Rule != tt.rule || req.Route != tt.route {
			t.Errorf("%s: rule %q route %q, want %q %q", tt.name, req.Outcome.Rule, req.Route, tt.rule, tt.route)
		}
	}
}
