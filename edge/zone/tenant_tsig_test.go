package zone

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestTenantKeys: a tenant with tsig_keys answers only queries verified
// with one of its keys; another tenant's key, an unsigned query or a key
// that did not verify get REFUSED; a query signed with its key belongs
// to it from anywhere.
func TestTenantKeys(t *testing.T) {
	t.Parallel()
	z, err := New(Config{
		Zones: []ZoneSpec{{Origin: "shared.", Records: []string{"www A 192.0.2.1"}}},
		Tenants: []TenantSpec{
			{Name: "red", Networks: []string{"10.1.0.0/16"}, TSIGKeys: []string{"Red.Key"},
				Zones: []ZoneSpec{{Origin: "red.example.", Records: []string{"www A 10.1.0.1"}}}},
			{Name: "blue", TSIGKeys: []string{"blue.key."},
				Zones: []ZoneSpec{{Origin: "blue.example.", Records: []string{"www A 10.2.0.1"}}}},
			{Name: "open", Networks: []string{"10.3.0.0/16"},
				Zones: []ZoneSpec{{Origin: "open.example.", Records: []string{"www A 10.3.0.1"}}}},
		},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	signed := func(r *pipeline.Request, state pipeline.TSIGState, key string) *pipeline.Request {
		r.TSIG, r.TSIGKey = state, key
		return r
	}
	tests := []struct {
		name  string
		req   *pipeline.Request
		rcode int
		want  string // the answer's address; "upstream" when next answered
	}{
		{"red client, red key", signed(request("www.red.example.", dns.TypeA, "10.1.2.3", ""), pipeline.TSIGVerified, "red.key."), dns.RcodeSuccess, "10.1.0.1"},
		{"red client, unsigned", request("www.red.example.", dns.TypeA, "10.1.2.3", ""), dns.RcodeRefused, ""},
		{"red client, blue key", signed(request("www.red.example.", dns.TypeA, "10.1.2.3", ""), pipeline.TSIGVerified, "blue.key."), dns.RcodeRefused, ""},
		{"red client, red key that did not verify", signed(request("www.red.example.", dns.TypeA, "10.1.2.3", ""), pipeline.TSIGBadSig, "red.key."), dns.RcodeRefused, ""},
		{"anyone with the blue key", signed(request("www.blue.example.", dns.TypeA, "192.0.2.9", ""), pipeline.TSIGVerified, "blue.key."), dns.RcodeSuccess, "10.2.0.1"},
		{"anyone with the red key: red by key", signed(request("www.red.example.", dns.TypeA, "192.0.2.9", ""), pipeline.TSIGVerified, "red.key."), dns.RcodeSuccess, "10.1.0.1"},
		{"blue key never reaches red's zone from outside", signed(request("www.red.example.", dns.TypeA, "192.0.2.9", ""), pipeline.TSIGVerified, "blue.key."), dns.RcodeSuccess, "upstream"},
		{"red key from the open tenant's client", signed(request("www.red.example.", dns.TypeA, "10.3.2.1", ""), pipeline.TSIGVerified, "red.key."), dns.RcodeSuccess, "upstream"},
		{"open tenant needs no key", request("www.open.example.", dns.TypeA, "10.3.2.1", ""), dns.RcodeSuccess, "10.3.0.1"},
		{"shared zone for keyed tenant's client", request("www.shared.", dns.TypeA, "10.1.2.3", ""), dns.RcodeSuccess, "192.0.2.1"},
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
				if a, ok := m.Answer[0].(*dns.A); ok {
					got = a.A.String()
				}
			}
			if tt.want == "upstream" {
				if tt.req.Outcome.Source == pipeline.SourceTenantZone || tt.req.Outcome.Source == pipeline.SourceZone {
					t.Errorf("answered from a zone (%s), want next", tt.req.Outcome.Source)
				}
				return
			}
			if got != tt.want {
				t.Errorf("answer %q, want %q:\n%v", got, tt.want, m)
			}
		})
	}
}
