package consul

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseName(t *testing.T) {
	const d = "consul."
	tests := []struct {
		name string
		in   string
		want Name
		err  error
	}{
		{"service", "web.service.consul.", Name{Kind: KindService, Service: "web"}, nil},
		{"service in dc", "web.service.dc1.consul.", Name{Kind: KindService, Service: "web", Datacenter: "dc1"}, nil},
		{"tag", "v2.web.service.consul.", Name{Kind: KindService, Service: "web", Tag: "v2"}, nil},
		{"tag in dc", "v2.web.service.dc1.consul.", Name{Kind: KindService, Service: "web", Tag: "v2", Datacenter: "dc1"}, nil},
		{"rfc2782 tcp", "_web._tcp.service.consul.", Name{Kind: KindService, Service: "web", RFC2782: true}, nil},
		{"rfc2782 tag", "_web._v2.service.dc1.consul.", Name{Kind: KindService, Service: "web", Tag: "v2", Datacenter: "dc1", RFC2782: true}, nil},
		{"node", "n1.node.consul.", Name{Kind: KindNode, Node: "n1"}, nil},
		{"node in dc", "n1.node.dc2.consul.", Name{Kind: KindNode, Node: "n1", Datacenter: "dc2"}, nil},
		{"addr v4", "7f000001.addr.dc1.consul.", Name{Kind: KindAddr, Addr: netip.MustParseAddr("127.0.0.1"), Datacenter: "dc1"}, nil},
		{"addr v6", "20010db8000000000000000000000001.addr.consul.", Name{Kind: KindAddr, Addr: netip.MustParseAddr("2001:db8::1")}, nil},
		{"service named like a kind", "node.service.consul.", Name{Kind: KindService, Service: "node"}, nil},
		{"other domain", "web.service.example.", Name{}, ErrNotInDomain},
		{"suffix without dot", "web.service.xconsul.", Name{}, ErrNotInDomain},
		{"domain itself", "consul.", Name{}, ErrBadName},
		{"no kind", "web.consul.", Name{}, ErrBadName},
		{"kind alone", "service.consul.", Name{}, ErrBadName},
		{"too many labels", "a.b.web.service.consul.", Name{}, ErrBadName},
		{"half rfc2782", "_web.v2.service.consul.", Name{}, ErrBadName},
		{"underscore service", "_web.service.consul.", Name{}, ErrBadName},
		{"empty rfc2782 service", "_._tcp.service.consul.", Name{}, ErrBadName},
		{"empty rfc2782 tag", "_web._.service.consul.", Name{}, ErrBadName},
		{"two node labels", "a.b.node.consul.", Name{}, ErrBadName},
		{"bad hex", "zz000001.addr.consul.", Name{}, ErrBadName},
		{"hex length", "7f0001.addr.consul.", Name{}, ErrBadName},
		{"empty label", "web..service.consul.", Name{}, ErrBadName},
		{"dc then junk", "web.service.dc1.x.consul.", Name{}, ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseName(tt.in, d)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseName(%q) error %v, want %v", tt.in, err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("ParseName(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestHexAddrRoundTrip(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.1.2.3", "2001:db8::1", "::ffff:192.0.2.1"} {
		a := netip.MustParseAddr(s)
		got, ok := parseHexAddr(hexAddr(a))
		if !ok || got != a.Unmap() {
			t.Errorf("%s: round trip gave %v %v", s, got, ok)
		}
	}
}

// FuzzParseName: any name either parses into a name whose parts are
// labels of it, or is refused with one of the two errors; never a panic.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"web.service.consul.", "_web._tcp.service.dc1.consul.", "v2.web.service.consul.",
		"n1.node.consul.", "7f000001.addr.consul.", "consul.", ".consul.", "a..consul.", "service.node.addr.consul."} {
		f.Add(s, "consul.")
	}
	f.Add("x.service.example.com.", "example.com.")
	f.Fuzz(func(t *testing.T, name, domain string) {
		n, err := ParseName(name, domain)
		if err != nil {
			if !errors.Is(err, ErrBadName) && !errors.Is(err, ErrNotInDomain) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		switch n.Kind {
		case KindService:
			if n.Service == "" {
				t.Fatalf("%q: service without a name", name)
			}
		case KindNode:
			if n.Node == "" {
				t.Fatalf("%q: node without a name", name)
			}
		case KindAddr:
			if !n.Addr.IsValid() {
				t.Fatalf("%q: addr without an address", name)
			}
		default:
			t.Fatalf("%q: kind %d", name, n.Kind)
		}
	})
}
