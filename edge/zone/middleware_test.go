package zone

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// tenantConfig has a shared zone, a tenant by client id and network, and
// a tenant on a more specific network with a zone of its own below the
// shared one.
var tenantConfig = Config{
	Zones: []ZoneSpec{
		{Origin: "example.", Records: []string{"www A 192.0.2.1", "shared TXT shared"}},
		{Origin: "corp.", Records: []string{"www A 192.0.2.2"}},
	},
	Tenants: []TenantSpec{
		{
			Name: "acme", ClientIDs: []string{"acme-phone"}, Networks: []string{"10.0.0.0/8", "2001:db8::/32"},
			Zones: []ZoneSpec{{Origin: "example.", Records: []string{"www A 10.0.0.1"}}},
		},
		{
			Name: "lab", ClientIDs: []string{"lab"}, Networks: []string{"10.1.0.0/16"},
			Zones: []ZoneSpec{{Origin: "lab.corp.", Records: []string{"www A 10.1.0.1"}}},
		},
	},
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	z, err := New(tenantConfig, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	tests := []struct {
		name   string
		req    *pipeline.Request
		want   string // the answer's rdata; "upstream" when next answers
		rcode  int
		noNext bool
	}{
		{name: "shared zone, no tenant", req: request("www.example.", dns.TypeA, "192.0.2.9", ""), want: "192.0.2.1"},
		{name: "tenant by client id", req: request("www.example.", dns.TypeA, "192.0.2.9", "acme-phone"), want: "10.0.0.1"},
		{name: "tenant by network", req: request("www.example.", dns.TypeA, "10.9.9.9", ""), want: "10.0.0.1"},
		{name: "tenant by IPv6 network", req: request("www.example.", dns.TypeA, "2001:db8::5", ""), want: "10.0.0.1"},
		{name: "IPv4-mapped client", req: request("www.example.", dns.TypeA, "::ffff:10.9.9.9", ""), want: "10.0.0.1"},
		{name: "most specific network", req: request("www.lab.corp.", dns.TypeA, "10.1.2.3", ""), want: "10.1.0.1"},
		{name: "client id before network", req: request("www.lab.corp.", dns.TypeA, "10.1.2.3", "acme-phone"), rcode: dns.RcodeNameError},
		{name: "unknown client id falls back to network", req: request("www.lab.corp.", dns.TypeA, "10.1.2.3", "nobody"), want: "10.1.0.1"},
		{name: "tenant overrides the shared zone", req: request("shared.example.", dns.TypeTXT, "10.9.9.9", ""), rcode: dns.RcodeNameError},
		{name: "tenant zone misses, shared answers", req: request("www.corp.", dns.TypeA, "10.1.2.3", ""), want: "192.0.2.2"},
		{name: "other tenants' zones are not seen", req: request("www.lab.corp.", dns.TypeA, "10.9.9.9", ""), rcode: dns.RcodeNameError},
		{name: "shared zone contains the lab name", req: request("www.lab.corp.", dns.TypeA, "192.0.2.9", ""), rcode: dns.RcodeNameError},
		{name: "no zone: next", req: request("www.example.org.", dns.TypeA, "10.1.2.3", "lab"), want: "upstream"},
		{name: "no client address: next", req: request("www.example.org.", dns.TypeA, "", ""), want: "upstream"},
		{name: "opcode other than QUERY: next", req: func() *pipeline.Request {
			r := request("www.example.", dns.TypeA, "10.1.2.3", "")
			r.Msg.Opcode = dns.OpcodeNotify
			return r
		}(), want: "upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := z.Middleware()(&fakeNext{t: t, serve: upstreamAnswer})
			m, err := h.ServeDNS(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s:\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode], m)
			}
			got := ""
			if len(m.Answer) > 0 {
				switch rr := m.Answer[0].(type) {
				case *dns.A:
					got = rr.A.String()
				case *dns.TXT:
					got = rr.Txt[0]
				}
			}
			if got != tt.want {
				t.Errorf("answer %q, want %q:\n%v", got, tt.want, m)
			}
			if tt.want != "upstream" && !m.Authoritative {
				t.Error("local answer without AA")
			}
		})
	}
}

func TestMiddlewareNoZones(t *testing.T) {
	t.Parallel()
	z, err := New(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	next := &fakeNext{t: t}
	if h := z.Middleware()(next); h != pipeline.Handler(next) {
		t.Errorf("Middleware wraps next without zones: %T", h)
	}
	if h := z.Fallback()(next); h != pipeline.Handler(next) {
		t.Errorf("Fallback wraps next without fallback zones: %T", h)
	}
}

func TestFallback(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	z, err := New(Config{Fallback: []ZoneSpec{
		{Origin: "internal.", Records: []string{"* 300 IN A 127.0.0.1"}},
		{Origin: "corp.", Records: []string{"www 300 IN A 10.9.9.9", "sub NS ns.elsewhere."}},
	}}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	failed := &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Err: fmt.Errorf("forward to group default: %w: timeout", pipeline.ErrUpstreamFailed)}
	other := &pipeline.Error{EDE: dns.ExtendedErrorCodeProhibited, Err: errors.New("refused by policy")}
	failing := func(err error) func(context.Context, *pipeline.Request) (*dns.Msg, error) {
		return func(context.Context, *pipeline.Request) (*dns.Msg, error) { return nil, err }
	}
	tests := []struct {
		name    string
		next    func(context.Context, *pipeline.Request) (*dns.Msg, error)
		req     *pipeline.Request
		wantErr error  // the error passed on, nil for an answer
		want    string // the A record answered, "" for NODATA
		noEDNS  bool
	}{
		{name: "upstreams down: wildcard answer", next: failing(failed), req: request("x.internal.", dns.TypeA, "192.0.2.1", ""), want: "127.0.0.1"},
		{name: "upstreams down: exact answer", next: failing(failed), req: request("www.corp.", dns.TypeA, "192.0.2.1", ""), want: "10.9.9.9"},
		{name: "upstreams down: NODATA", next: failing(failed), req: request("www.corp.", dns.TypeMX, "192.0.2.1", ""), want: ""},
		{name: "upstreams down: without EDNS", next: failing(failed), req: func() *pipeline.Request {
			r := request("x.internal.", dns.TypeA, "192.0.2.1", "")
			r.Msg.Extra = nil
			return r
		}(), want: "127.0.0.1", noEDNS: true},
		{name: "upstreams down: NXDOMAIN in the fallback zone", next: failing(failed), req: request("nope.corp.", dns.TypeA, "192.0.2.1", ""), wantErr: failed},
		{name: "upstreams down: referral in the fallback zone", next: failing(failed), req: request("a.sub.corp.", dns.TypeA, "192.0.2.1", ""), wantErr: failed},
		{name: "upstreams down: name in no fallback zone", next: failing(failed), req: request("www.example.", dns.TypeA, "192.0.2.1", ""), wantErr: failed},
		{name: "other error passes", next: failing(other), req: request("x.internal.", dns.TypeA, "192.0.2.1", ""), wantErr: other},
		{name: "upstream answer passes", next: upstreamAnswer, req: request("x.internal.", dns.TypeA, "192.0.2.1", ""), want: "upstream"},
	}
	answered := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := z.Fallback()(&fakeNext{t: t, serve: tt.next})
			m, err := h.ServeDNS(context.Background(), tt.req)
			if tt.wantErr != nil {
				if err != tt.wantErr || m != nil {
					t.Fatalf("got %v, %v; want the error %v unchanged", m, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "upstream" {
				if txt, ok := m.Answer[0].(*dns.TXT); !ok || txt.Txt[0] != "upstream" {
					t.Errorf("upstream answer changed: %v", m)
				}
				return
			}
			answered++
			if m.Rcode != dns.RcodeSuccess || m.Authoritative {
				t.Errorf("rcode %d, AA %v; want NOERROR without AA", m.Rcode, m.Authoritative)
			}
			got := ""
			if len(m.Answer) == 1 {
				got = m.Answer[0].(*dns.A).A.String()
			}
			if got != tt.want {
				t.Errorf("answer %q, want %q", got, tt.want)
			}
			opt := m.IsEdns0()
			if tt.noEDNS {
				if opt != nil {
					t.Error("OPT in the answer to a query without EDNS")
				}
				return
			}
			if opt == nil || len(opt.Option) != 1 {
				t.Fatalf("OPT %v, want one EDE option", opt)
			}
			ede, ok := opt.Option[0].(*dns.EDNS0_EDE)
			if !ok || ede.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority || ede.ExtraText != "answer from fallback zone" {
				t.Errorf("EDE %v, want 22 (No Reachable Authority) \"answer from fallback zone\"", opt.Option[0])
			}
		})
	}
	if got := gather(t, reg)["dnsedge_zone_fallback_answers_total"]; got != float64(answered) {
		t.Errorf("dnsedge_zone_fallback_answers_total = %v, want %d", got, answered)
	}
}

func TestTenantPick(t *testing.T) {
	t.Parallel()
	tn := newTenants([]TenantSpec{
		{Name: "wide", Networks: []string{"10.0.0.0/8", "::/0"}},
		{Name: "narrow", Networks: []string{"10.1.0.0/16", "::ffff:10.2.0.0/112"}},
		{Name: "host", Networks: []string{"10.1.2.3"}, ClientIDs: []string{"h"}},
	})
	tests := []struct {
		name   string
		client string
		id     string
		want   int
	}{
		{name: "wide", client: "10.9.0.1", want: 0},
		{name: "narrow", client: "10.1.9.9", want: 1},
		{name: "host", client: "10.1.2.3", want: 2},
		{name: "mapped prefix in the config", client: "10.2.0.7", want: 1},
		{name: "mapped client", client: "::ffff:10.1.9.9", want: 1},
		{name: "IPv6 default route", client: "2001:db8::1", want: 0},
		{name: "IPv6 with zone", client: "fe80::1%eth0", want: 0},
		{name: "no match", client: "192.0.2.1", want: -1},
		{name: "client id", client: "192.0.2.1", id: "h", want: 2},
		{name: "no address", want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &pipeline.Request{ClientID: tt.id}
			if tt.client != "" {
				r.Client = netip.AddrPortFrom(netip.MustParseAddr(tt.client), 1)
			}
			if got := tn.pick(r); got != tt.want {
				t.Errorf("pick = %d, want %d", got, tt.want)
			}
		})
	}
}
