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
// stack, a name in mixed case is matched as it is), so that a policy's
// cost per query is the decision alone.
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
	q.SetQuestion("www.Example.org.", dns.TypeA)
	// Without a connection memo (UDP), and with one after the
	// connection's first query (TCP, DoT).
	for _, memo := range []*pipeline.ConnMemo{nil, new(pipeline.ConnMemo)} {
		base := pipeline.Request{Msg: q, Client: netip.MustParseAddrPort("127.0.0.1:5353"), Listener: pipeline.KindTCP, Conn: memo}
		req := new(pipeline.Request)
		ctx := context.Background()
		*req = base
		if _, err := h.ServeDNS(ctx, req); err != nil {
			t.Fatal(err)
		}
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
			t.Errorf("memo %v: the policy stage allocates %v times per query", memo != nil, allocs)
		}
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

// TestPolicyConnMemo: over a connection with a memo, the stage decides
// each query on the query's own tags, ECS and name, never on the
// decision of the connection's previous query; a stage of a reloaded
// policy decides on its own rules, not on the memo the old policy left
// in the connection; and a request from another client over the same
// memo is decided on its own client.
func TestPolicyConnMemo(t *testing.T) {
	load := func(doc string) *policy.Policy {
		t.Helper()
		p, err := policy.Load("p.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := load(`version: v1
rules:
  - {name: tagged, match: {tags: [team=a], source: [127.0.0.0/8]}, route: a}
  - {name: ecs-net, match: {ecs: [192.0.2.0/24], source: [127.0.0.0/8]}, route: e}
  - {name: local, match: {source: [127.0.0.0/8], listener: [tcp]}, route: l}
`)
	reloaded := load(`version: v2
rules:
  - {name: new-local, match: {source: [127.0.0.0/8]}, route: n}
`)
	next := pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return new(dns.Msg), nil })
	hOld := NewPolicy(old, "default").Middleware(next)
	hNew := NewPolicy(reloaded, "default").Middleware(next)
	var memo pipeline.ConnMemo
	local := netip.MustParseAddrPort("127.0.0.1:5353")
	for i, tt := range []struct {
		h           pipeline.Handler
		client      netip.AddrPort
		kind        pipeline.Kind
		tags        []string
		ecs         string
		rule, route string
	}{
		{h: hOld, client: local, kind: pipeline.KindTCP, rule: "local", route: "l"},
		{h: hOld, client: local, kind: pipeline.KindTCP, tags: []string{"team=a"}, rule: "tagged", route: "a"},
		{h: hOld, client: local, kind: pipeline.KindTCP, ecs: "192.0.2.0/24", rule: "ecs-net", route: "e"},
		{h: hOld, client: local, kind: pipeline.KindTCP, rule: "local", route: "l"},
		{h: hOld, client: local, kind: pipeline.KindDoT, rule: "", route: ""},
		{h: hOld, client: netip.MustParseAddrPort("192.0.2.7:53"), kind: pipeline.KindTCP, rule: "", route: ""},
		{h: hOld, client: local, kind: pipeline.KindTCP, rule: "local", route: "l"},
		{h: hNew, client: local, kind: pipeline.KindTCP, rule: "new-local", route: "n"},
		{h: hNew, client: local, kind: pipeline.KindTCP, tags: []string{"team=a"}, rule: "new-local", route: "n"},
		{h: hOld, client: local, kind: pipeline.KindTCP, rule: "local", route: "l"},
	} {
		q := new(dns.Msg)
		q.SetQuestion("www.example.org.", dns.TypeA)
		if tt.ecs != "" {
			o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
			p := netip.MustParsePrefix(tt.ecs)
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
			q.Extra = append(q.Extra, o)
		}
		req := &pipeline.Request{Msg: q, Client: tt.client, Listener: tt.kind, Tags: tt.tags, Conn: &memo}
		if _, err := tt.h.ServeDNS(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if req.Outcome.Rule != tt.rule || req.Route != tt.route {
			t.Errorf("query %d: rule %q route %q, want %q %q", i, req.Outcome.Rule, req.Route, tt.rule, tt.route)
		}
	}
}

// TestPolicyClientMemo: without a connection memo, the stage decides
// each query on its own client, client id and listener kind, whether
// the client's view is made yet or not, with clients taking turns in
// the memo's slots; and a stream of clients each seen once makes no
// view.
func TestPolicyClientMemo(t *testing.T) {
	p, err := policy.Load("p.yaml", []byte(`version: v1
rules:
  - {name: by-id, match: {client_id: [tenant-a], qname_suffix: [example.org]}, route: a}
  - {name: net-doh, match: {source: [10.0.0.0/8], listener: [doh]}, route: d}
  - {name: net, match: {source: [10.0.0.0/8]}, route: n}
  - {name: v6, match: {source: ["2001:db8::/32"]}, route: six}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := NewPolicy(p, "default")
	h := s.Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return new(dns.Msg), nil }))
	ask := func(client netip.AddrPort, id string, kind pipeline.Kind) (string, string) {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion("www.example.org.", dns.TypeA)
		req := &pipeline.Request{Msg: q, Client: client, ClientID: id, Listener: kind}
		if _, err := h.ServeDNS(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		return req.Outcome.Rule, req.Route
	}
	type client struct {
		addr        string
		id          string
		kind        pipeline.Kind
		rule, route string
	}
	clients := []client{
		{"10.1.2.3:5353", "tenant-a", pipeline.KindDoH, "by-id", "a"},
		{"10.1.2.3:5353", "", pipeline.KindDoH, "net-doh", "d"},
		{"10.1.2.3:5353", "", pipeline.KindUDP, "net", "n"},
		{"10.1.2.4:5353", "", pipeline.KindUDP, "net", "n"},
		{"[::ffff:10.1.2.3]:5353", "", pipeline.KindUDP, "net", "n"},
		{"[2001:db8::1]:53", "", pipeline.KindDoQ, "v6", "six"},
		{"192.0.2.1:53", "", pipeline.KindUDP, "", ""},
		{"192.0.2.1:53", "tenant-a", pipeline.KindDoQ, "by-id", "a"},
	}
	for round := range 4 {
		for i, c := range clients {
			if rule, route := ask(netip.MustParseAddrPort(c.addr), c.id, c.kind); rule != c.rule || route != c.route {
				t.Errorf("round %d, client %d: rule %q route %q, want %q %q", round, i, rule, route, c.rule, c.route)
			}
		}
	}
	// A client that takes the slot of another's view is decided on its
	// own: the same address and client id over another listener kind.
	var shared netip.AddrPort
	for i := 0; !shared.IsValid(); i++ {
		if i == 1<<16 {
			t.Fatal("no address whose UDP and DoH clients share a slot")
		}
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}), 53)
		u, _ := s.slot(&pipeline.Request{Client: a, Listener: pipeline.KindUDP})
		d, _ := s.slot(&pipeline.Request{Client: a, Listener: pipeline.KindDoH})
		if u == d {
			shared = a
		}
	}
	for range 2 {
		ask(shared, "", pipeline.KindDoH) // the second makes the view
	}
	if rule, _ := ask(shared, "", pipeline.KindUDP); rule != "net" {
		t.Errorf("a UDP client in the slot of its DoH view: rule %q, want net", rule)
	}
	views := func() (n int) {
		for i := range s.clients {
			if s.clients[i].pc.Load() != nil {
				n++
			}
		}
		return n
	}
	if n := views(); n == 0 {
		t.Fatal("no client has a view after four rounds")
	}
	fresh := NewPolicy(p, "default")
	h = fresh.Middleware(pipeline.HandlerFunc(func(context.Context, *pipeline.Request) (*dns.Msg, error) { return new(dns.Msg), nil }))
	s = fresh
	for i := range 2000 {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 53)
		if rule, _ := ask(addr, "", pipeline.KindUDP); rule != "net" {
			t.Fatalf("client %v: rule %q, want net", addr, rule)
		}
	}
	if n := views(); n != 0 {
		t.Errorf("%d views made for 2,000 clients each seen once", n)
	}
}
