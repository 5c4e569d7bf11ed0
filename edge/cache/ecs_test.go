package cache

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// ecsUpstream answers with an ECS option echoing the query's subnet
// (req.ECS) with the given scope; scope -1 sends no ECS option, family
// overrides the option's family when not 0.
type ecsUpstream struct {
	scope  int
	family uint16
	calls  int
}

func (u *ecsUpstream) ServeDNS(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	u.calls++
	m, err := answerAny(req.Msg)
	if err != nil || u.scope < 0 || !req.ECS.IsValid() {
		return m, err
	}
	fam := uint16(2)
	if req.ECS.Addr().Is4() {
		fam = 1
	}
	if u.family != 0 {
		fam = u.family
	}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: fam, SourceNetmask: uint8(req.ECS.Bits()),
		SourceScope: uint8(u.scope), Address: req.ECS.Masked().Addr().AsSlice(),
	})
	m.Extra = append(m.Extra, opt)
	return m, nil
}

// TestECSScope checks RFC 7871 §7.3.1: answers are shared by every client
// inside their scope and no further.
func TestECSScope(t *testing.T) {
	t.Parallel()
	type ask struct {
		ecs string // "" for a query without ECS
		hit bool
	}
	tests := []struct {
		name   string
		scope  int
		family uint16
		asks   []ask
	}{
		{"scope equal to source: same /24 only", 24, 0, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "198.51.100.200/24", hit: true},
			{ecs: "198.51.101.7/24"},
			{ecs: ""},
		}},
		{"scope shorter than source: the whole /16 shares it", 16, 0, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "198.51.7.1/24", hit: true},
			{ecs: "198.52.0.1/24"},
			{ecs: "198.51.0.0/20", hit: true},
		}},
		{"scope longer than source is cut to the source", 32, 0, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "198.51.100.8/24", hit: true},
		}},
		{"scope 0 covers everyone, queries without ECS too", 0, 0, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "203.0.113.1/24", hit: true},
			{ecs: "2001:db8::/56", hit: true},
			{ecs: "", hit: true},
		}},
		{"no ECS option in the answer: scope 0", -1, 0, []ask{
			{ecs: "2001:db8::/56"},
			{ecs: "2001:db8:1::/56", hit: true},
		}},
		{"families stay apart", 24, 0, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "::ffff:198.51.100.7/120"},
		}},
		{"an answer for another family is not cached", 24, 2, []ask{
			{ecs: "198.51.100.7/24"},
			{ecs: "198.51.100.7/24"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			up := &ecsUpstream{scope: tt.scope, family: tt.family}
			h := c.Middleware()(up)
			for i, a := range tt.asks {
				req := query{}.request(t)
				if a.ecs != "" {
					req.ECS = netip.MustParsePrefix(a.ecs)
				}
				before := up.calls
				m, err := h.ServeDNS(context.Background(), req)
				if err != nil || len(m.Answer) != 1 {
					t.Fatalf("ask %d: %v, %v", i, m, err)
				}
				if hit := up.calls == before; hit != a.hit {
					t.Fatalf("ask %d (%s): hit = %v, want %v", i, a.ecs, hit, a.hit)
				}
			}
		})
	}
}
