package cache

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// wireNext answers like an upstream behind the forward stage: reply
// builds the answer, and with keep the stage hands its wire form on in
// req.Upstream, packed without compression (as some upstreams send it),
// with another ID and with bytes past the last record.
type wireNext struct {
	t     *testing.T
	reply func(req *pipeline.Request) *dns.Msg
	keep  bool
	calls int
}

func (n *wireNext) ServeDNS(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	n.calls++
	m := n.reply(req)
	if n.keep {
		c := m.Copy()
		c.Compress = false
		c.Id = 0xBEEF
		w, err := c.Pack()
		if err != nil {
			n.t.Fatal(err)
		}
		binary.BigEndian.PutUint16(w, m.Id)
		req.Upstream = pipeline.UpstreamReply{Msg: m, Wire: append(w, 0xde, 0xad)}
	}
	return m, nil
}

// TestUpstreamWireStored: a cache that stores the upstream's bytes
// answers every hit exactly as one that packs the reply itself, for
// every shape of answer; what it does not cache (truncated answers) it
// does not cache either way.
func TestUpstreamWireStored(t *testing.T) {
	t.Parallel()
	ecsOpt := func(req *pipeline.Request, scope uint8) dns.RR {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
			Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(req.ECS.Bits()),
			SourceScope: scope, Address: req.ECS.Masked().Addr().AsSlice(),
		})
		return opt
	}
	tests := []struct {
		name   string
		q      query
		up     upstream
		opt    func(req *pipeline.Request) dns.RR // the reply's OPT, when not up's
		cached bool
	}{
		{"NOERROR", query{}, upstream{answer: []string{aWWW}}, nil, true},
		{"NXDOMAIN with SOA", query{}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("3600", "60")}}, nil, true},
		{"NODATA with SOA", query{qtype: dns.TypeAAAA}, upstream{ns: []string{soa("3600", "60")}}, nil, true},
		{"CNAME chain", query{name: "a.example.org."}, upstream{answer: []string{
			"a.example.org. 300 IN CNAME b.example.org.",
			"b.example.org. 200 IN CNAME www.example.org.",
			aWWW,
		}, ns: []string{"example.org. 3600 IN NS ns1.example.org."}, extra: []string{"ns1.example.org. 3600 IN A 192.0.2.53"}}, nil, true},
		{"truncated", query{}, upstream{answer: []string{aWWW}, tc: true}, nil, false},
		{"DNSSEC records with DO", query{do: true}, upstream{answer: []string{
			aWWW,
			"www.example.org. 300 IN RRSIG A 13 3 300 20300101000000 20250101000000 12345 example.org. dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgbG9uZyBlbm91Z2g=",
		}, ns: []string{"example.org. 3600 IN NSEC z.example.org. A NS SOA RRSIG NSEC"}}, nil, true},
		{"ECS with scope", query{ecs: "198.51.100.7/24"}, upstream{answer: []string{aWWW}},
			func(req *pipeline.Request) dns.RR { return ecsOpt(req, 24) }, true},
		{"ECS with scope 0", query{ecs: "198.51.100.7/24"}, upstream{answer: []string{aWWW}},
			func(req *pipeline.Request) dns.RR { return ecsOpt(req, 0) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits [2]*dns.Msg
			for i, keep := range []bool{false, true} {
				clk := newClock()
				c := newCache(t, Config{Now: clk.Now})
				next := &wireNext{t: t, keep: keep, reply: func(req *pipeline.Request) *dns.Msg {
					m, err := tt.up.reply(t, req.Msg)
					if err != nil {
						t.Fatal(err)
					}
					if tt.opt != nil {
						m.Extra = append(m.Extra, tt.opt(req))
					}
					return m
				}}
				h := c.Middleware()(next)
				req := tt.q.request(t)
				miss, err := h.ServeDNS(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				if keep && miss != req.Upstream.Msg {
					t.Fatal("the miss did not return the forward stage's answer")
				}
				if keep && tt.cached {
					// The entry holds the upstream's bytes, all of them
					// (a name may point past the last record), ID 0.
					want := req.Upstream.Wire
					e := onlyEntry(t, c)
					if m := e.msg(); len(m) != len(want) || binary.BigEndian.Uint16(m) != 0 {
						t.Errorf("entry has %d bytes with id %d, want the upstream's %d with id 0",
							len(m), binary.BigEndian.Uint16(m), len(want))
					}
				}
				clk.Advance(10 * time.Second)
				q2 := tt.q
				q2.id = 7
				hit, err := h.ServeDNS(t.Context(), q2.request(t))
				if err != nil {
					t.Fatal(err)
				}
				if want := 1 + map[bool]int{true: 0, false: 1}[tt.cached]; next.calls != want {
					t.Fatalf("keep=%t: next called %d times, want %d", keep, next.calls, want)
				}
				hits[i] = hit
			}
			if tt.cached && hits[0].String() != hits[1].String() {
				t.Errorf("hit from the packed reply:\n%v\nhit from the upstream's bytes:\n%v", hits[0], hits[1])
			}
		})
	}
}

// TestUpstreamWireOnlyForItsMessage: a stage between the cache and the
// forward stage that returns another message (as DNSSEC validation
// does) makes the cache pack that message, not store the bytes of the
// one it replaced.
func TestUpstreamWireOnlyForItsMessage(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now})
	up := upstream{answer: []string{aWWW}}
	next := &wireNext{t: t, keep: true, reply: func(req *pipeline.Request) *dns.Msg {
		m, _ := up.reply(t, req.Msg)
		return m
	}}
	rewrite := pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := next.ServeDNS(ctx, req)
		c := m.Copy()
		c.Answer[0].(*dns.A).A = netip.MustParseAddr("192.0.2.99").AsSlice()
		return c, err
	})
	h := c.Middleware()(rewrite)
	if _, err := h.ServeDNS(t.Context(), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	hit, err := h.ServeDNS(t.Context(), query{}.request(t))
	if err != nil {
		t.Fatal(err)
	}
	if next.calls != 1 {
		t.Fatalf("next called %d times", next.calls)
	}
	if got := hit.Answer[0].(*dns.A).A.String(); got != "192.0.2.99" {
		t.Errorf("hit answers %s, want the rewritten 192.0.2.99", got)
	}
}

// onlyEntry returns the one entry c holds.
func onlyEntry(t *testing.T, c *Cache) *entry {
	t.Helper()
	var found []*entry
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for e := s.lru.next; e != &s.lru; e = e.next {
			found = append(found, e)
		}
		s.mu.Unlock()
	}
	if len(found) != 1 {
		t.Fatalf("cache holds %d entries, want 1", len(found))
	}
	return found[0]
}
