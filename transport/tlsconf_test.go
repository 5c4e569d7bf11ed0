package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/dnsedge/dnsedge/transport/transporttest"
)

func TestParseSPKIPin(t *testing.T) {
	t.Parallel()
	ca := transporttest.NewCA(t)
	cases := []struct {
		name, in, err string
	}{
		{name: "leaf pin", in: ca.LeafPin()},
		{name: "not base64", in: "not base64!", err: "illegal base64"},
		{name: "too short", in: "AAAA", err: "3 bytes"},
		{name: "url alphabet", in: strings.NewReplacer("+", "-", "/", "_").Replace(strings.Repeat("+/8A", 11)), err: "illegal base64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseSPKIPin(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || p.String() != tc.in || p != PinOf(ca.Leaf.Leaf) {
				t.Fatalf("got %s, %v", p, err)
			}
		})
	}
}

// TestVerifyPinned: a pin is a trust anchor the leaf must chain to, not a
// certificate that merely has to be present.
func TestVerifyPinned(t *testing.T) {
	t.Parallel()
	real, attacker := transporttest.NewCA(t), transporttest.NewCA(t)
	pins := func(cs ...*x509.Certificate) map[SPKIPin]bool {
		m := make(map[SPKIPin]bool)
		for _, c := range cs {
			m[PinOf(c)] = true
		}
		return m
	}
	cases := []struct {
		name  string
		certs []*x509.Certificate
		host  string
		pins  map[SPKIPin]bool
		ok    bool
		is    error
	}{
		{"CA pinned", []*x509.Certificate{real.Leaf.Leaf, real.Cert}, "dns.test", pins(real.Cert), true, nil},
		{"leaf pinned", []*x509.Certificate{real.Leaf.Leaf}, "127.0.0.1", pins(real.Leaf.Leaf), true, nil},
		{"IPv6 SAN", []*x509.Certificate{real.Leaf.Leaf}, "::1", pins(real.Leaf.Leaf), true, nil},
		{"wrong name", []*x509.Certificate{real.Leaf.Leaf, real.Cert}, "other.test", pins(real.Cert), false, nil},
		{"no match", []*x509.Certificate{real.Leaf.Leaf, real.Cert}, "dns.test", pins(attacker.Cert), false, ErrPinMismatch},
		{"nothing sent", nil, "dns.test", pins(real.Cert), false, ErrPinMismatch},
		{"pinned CA beside a foreign leaf", []*x509.Certificate{attacker.Leaf.Leaf, real.Cert}, "dns.test", pins(real.Cert), false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyPinned(tc.certs, tc.host, tc.pins)
			if (err == nil) != tc.ok || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want ok %v (%v)", err, tc.ok, tc.is)
			}
		})
	}
}

func TestClientTLSConfigServerName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts TLSOptions
		ep   Endpoint
		want string
	}{
		{"host", TLSOptions{}, Endpoint{Host: "dns.example"}, "dns.example"},
		{"IP literal", TLSOptions{}, Endpoint{Addr: netip.MustParseAddr("2001:db8::1")}, "2001:db8::1"},
		{"configured name wins", TLSOptions{ServerName: "dns.test"}, Endpoint{Addr: netip.MustParseAddr("192.0.2.1")}, "dns.test"},
		{"nothing", TLSOptions{}, Endpoint{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := ClientTLSConfig(tc.opts, tc.ep)
			if tc.want == "" {
				if err == nil {
					t.Fatal("no error without a server name")
				}
				return
			}
			if err != nil || conf.ServerName != tc.want || conf.MinVersion < 0x0303 {
				t.Fatalf("got %+v, %v", conf, err)
			}
		})
	}
}

// TestExchangerTLSSessionCache: each exchanger gets a session cache of its
// own, unless the base configuration carries one to share.
func TestExchangerTLSSessionCache(t *testing.T) {
	t.Parallel()
	shared := tls.NewLRUClientSessionCache(1)
	cases := []struct {
		name  string
		base  *tls.Config
		share bool
	}{
		{"own cache", &tls.Config{ServerName: "dns.test"}, false},
		{"shared cache", &tls.Config{ServerName: "dns.test", ClientSessionCache: shared}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := exchangerTLS(tc.base, "dot")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := exchangerTLS(tc.base, "dot")
			if a.ClientSessionCache == nil || (a.ClientSessionCache == b.ClientSessionCache) != tc.share {
				t.Fatalf("caches %p %p, want shared %v", a.ClientSessionCache, b.ClientSessionCache, tc.share)
			}
		})
	}
}
