package policy

import (
	"net/netip"
	"testing"
)

// TestTable checks the client matcher shared by rules and tenants.
func TestTable(t *testing.T) {
	t.Parallel()
	var tb Table[string]
	for _, n := range []struct{ net, v string }{
		{"10.0.0.0/8", "wide"}, {"10.1.0.0/16", "narrow"}, {"10.1.2.3", "host"},
		{"::ffff:10.2.0.0/112", "mapped"}, {"::/0", "v6"}, {"2001:db8::/32", "doc"},
	} {
		p, err := ParseNetwork(n.net)
		if err != nil {
			t.Fatal(err)
		}
		tb.AddNetwork(p, n.v)
	}
	tb.AddID("h", "by-id")
	tests := []struct {
		name, id, addr, prefix string
		want                   string // "" for no match
	}{
		{name: "wide", addr: "10.9.0.1", want: "wide"},
		{name: "narrow", addr: "10.1.9.9", want: "narrow"},
		{name: "host", addr: "10.1.2.3", want: "host"},
		{name: "mapped prefix", addr: "10.2.0.7", want: "mapped"},
		{name: "mapped client", addr: "::ffff:10.1.9.9", want: "narrow"},
		{name: "zone ignored", addr: "fe80::1%eth0", want: "v6"},
		{name: "more specific IPv6", addr: "2001:db8::1", want: "doc"},
		{name: "no match", addr: "192.0.2.1"},
		{name: "no address"},
		{name: "id first", id: "h", addr: "10.9.0.1", want: "by-id"},
		{name: "unknown id", id: "x", addr: "10.1.9.9", want: "narrow"},
		{name: "prefix inside", prefix: "10.1.2.0/24", want: "narrow"},
		{name: "prefix wider than every network", prefix: "10.0.0.0/7"},
		{name: "mapped prefix lookup", prefix: "::ffff:10.1.2.0/120", want: "narrow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			var ok bool
			if tt.prefix != "" {
				got, ok = tb.LookupPrefix(netip.MustParsePrefix(tt.prefix))
			} else {
				var a netip.Addr
				if tt.addr != "" {
					a = netip.MustParseAddr(tt.addr)
				}
				got, ok = tb.Lookup(tt.id, a)
			}
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
	if _, ok := tb.LookupPrefix(netip.Prefix{}); ok {
		t.Error("the zero Prefix matched")
	}
}

// TestParseNetwork checks what a network may be written as.
func TestParseNetwork(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "192.0.2.1", want: "192.0.2.1/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "::ffff:10.0.0.0/64", err: `network "::ffff:10.0.0.0/64": an IPv4-mapped prefix needs at least 96 bits`},
		{in: "fe80::1%eth0", err: `network "fe80::1%eth0" must not have a zone`},
		{in: "nope", err: `"nope" is neither a CIDR nor an address`},
		{in: "10.0.0.0/33", err: `"10.0.0.0/33" is not a network: prefix length out of range`},
	}
	for _, tt := range tests {
		p, err := ParseNetwork(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%s: error %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || p.String() != tt.want {
			t.Errorf("%s: %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}
