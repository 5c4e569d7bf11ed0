package transport_test

import (
	"context"
	"log/slog"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/jonboulle/clockwork"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "udp://192.0.2.1:53", want: "udp 192.0.2.1 53"},
		{in: "udp://192.0.2.1", want: "udp 192.0.2.1 53"},
		{in: "tcp://[2001:db8::1]:5353", want: "tcp 2001:db8::1 5353"},
		{in: "udp://[::ffff:192.0.2.1]:53", want: "udp 192.0.2.1 53"},
		{in: "udp://dns.example", want: "udp dns.example 53"},
		{in: "tls://dns.example", want: "tls dns.example 853"},
		{in: "tls://[2001:db8::1]:8853", want: "tls 2001:db8::1 8853"},
		{in: "quic://192.0.2.1", want: "quic 192.0.2.1 853"},
		{in: "https://dns.example", want: "https dns.example 443 /dns-query"},
		{in: "https://dns.example/", want: "https dns.example 443 /"},
		{in: "https://192.0.2.1:8443/custom/path", want: "https 192.0.2.1 8443 /custom/path"},
		{in: "https://dns.example/a%2Fb", want: "https dns.example 443 /a%2Fb"},
		{in: "https://dns.example/dns-query?dns=x", err: "query and fragment"},
		{in: "https://dns.example/dns-query?", err: "query and fragment"},
		{in: "https://dns.example/#frag", err: "query and fragment"},
		{in: "https://user:pw@dns.example/", err: "user information"},
		{in: "tls://dns.example/dns-query", err: "only scheme://host:port"},
		{in: "quic://dns.example:0", err: "bad port"},
		{in: "https:dns.example", err: "not allowed"},
		{in: "192.0.2.1", err: "has no scheme"},
		{in: "gopher://x", err: "unknown upstream scheme"},
		{in: "udp://192.0.2.1:0", err: "bad port"},
		{in: "udp://192.0.2.1:99999", err: "bad port"},
		{in: "udp://192.0.2.1/dns-query", err: "only scheme://host:port"},
		{in: "udp://user@192.0.2.1", err: "user information"},
		{in: "udp://", err: "has no host"},
		{in: "udp://[fe80::1%25eth0]:53", err: "zoned"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := transport.ParseEndpoint(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			host := ep.Host
			if ep.Addr.IsValid() {
				host = ep.Addr.String()
			}
			got := ep.Scheme + " " + host + " " + itoa(ep.Port)
			if ep.Path != "" {
				got += " " + ep.Path
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{
		"udp://192.0.2.1:53", "tcp://[2001:db8::1]:53", "udp://dns.example", "udp://[::1]:0", "x://%zz",
		"tls://dns.example", "tls://[2001:db8::1]:853", "quic://192.0.2.1:8853", "https://dns.example",
		"https://dns.example/dns-query", "https://[::1]:443/a%2Fb", "https://dns.example/?x", "https://u@h/#f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := transport.ParseEndpoint(s)
		if err != nil {
			return
		}
		if ep.Port == 0 || !slices.Contains([]string{"udp", "tcp", "tls", "https", "quic"}, ep.Scheme) ||
			(ep.Host == "") == !ep.Addr.IsValid() {
			t.Fatalf("%q parsed to an invalid endpoint %+v", s, ep)
		}
		if (ep.Scheme == "https") != (ep.Path != "") || (ep.Path != "" && ep.Path[0] != '/') {
			t.Fatalf("%q parsed to path %q for %s", s, ep.Path, ep.Scheme)
		}
		if ep.Path != "" {
			// The path must make a DoH request URL that parses back to it.
			u, err := url.Parse("https://h" + ep.Path)
			if err != nil || u.EscapedPath() != ep.Path || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("%q: path %q does not round-trip: %v", s, ep.Path, err)
			}
		}
	})
}

func addrsOf(paths []*transport.Path) []string {
	var out []string
	for _, p := range paths {
		out = append(out, p.Family.String()+" "+p.ID.Addr.String())
	}
	return out
}

// newUpstream starts an upstream for udp://dns.test:5300 on a fake clock,
// with probes off, and returns it with its clock once the re-resolution
// timer is set.
func newUpstream(t *testing.T, boot *transporttest.Bootstrap, pin transport.Pin, own func(netip.AddrPort) bool) (*transport.Upstream, *clockwork.FakeClock) {
	t.Helper()
	ep, err := transport.ParseEndpoint("udp://dns.test:5300")
	if err != nil {
		t.Fatal(err)
	}
	resolver := transport.NewBootstrap([]netip.AddrPort{boot.Addr()})
	t.Cleanup(func() { resolver.Close() })
	fc := clockwork.NewFakeClock()
	u, err := transport.NewUpstream(transport.UpstreamConfig{Name: "up", Endpoint: ep, Pin: pin}, transport.UpstreamDeps{
		Registry: transport.NewRegistry(transport.HealthConfig{Now: fc.Now}, nil), Resolver: resolver,
		Logger: slog.New(slog.DiscardHandler), Own: own, MinRefresh: 50 * time.Millisecond, RetryRefresh: 50 * time.Millisecond,
		Probe: transport.ProbeSpec{Interval: -1}, Clock: fc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitRefresh(t, fc)
	return u, fc
}

// waitRefresh returns once the upstream's re-resolution is waiting on its
// timer again: the one timer of an upstream without probes. A resolution
// the clock set off has finished by then.
func waitRefresh(t *testing.T, fc *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("re-resolution did not wait on its timer again: %v", err)
	}
}

// TestUpstreamResolution: a host name becomes one path per address, each
// pinned to its family, preferred family first; the pin filters families;
// our own addresses are skipped; and when the TTL runs out the name is
// resolved again and the paths follow, keeping the health of addresses
// that stayed.
func TestUpstreamResolution(t *testing.T) {
	const both = "dns.test. 1 IN A 127.0.0.1\ndns.test. 1 IN A 127.0.0.2\ndns.test. 1 IN AAAA ::1\n"
	tests := []struct {
		name string
		pin  transport.Pin
		own  func(netip.AddrPort) bool
		want []string
	}{
		{"both families, IPv6 first, interleaved", transport.PinBoth, nil,
			[]string{"ipv6 [::1]:5300", "ipv4 127.0.0.1:5300", "ipv4 127.0.0.2:5300"}},
		{"pinned to IPv4", transport.PinIPv4, nil, []string{"ipv4 127.0.0.1:5300", "ipv4 127.0.0.2:5300"}},
		{"pinned to IPv6", transport.PinIPv6, nil, []string{"ipv6 [::1]:5300"}},
		{"own listener address skipped", transport.PinBoth,
			func(a netip.AddrPort) bool { return a.String() == "127.0.0.2:5300" },
			[]string{"ipv6 [::1]:5300", "ipv4 127.0.0.1:5300"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			boot := transporttest.StartBootstrap(t, both)
			u, _ := newUpstream(t, boot, tt.pin, tt.own)
			if got := addrsOf(u.Paths()); !slices.Equal(got, tt.want) {
				t.Fatalf("paths = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("re-resolved when the TTL runs out", func(t *testing.T) {
		boot := transporttest.StartBootstrap(t, both)
		u, fc := newUpstream(t, boot, transport.PinBoth, nil)
		kept := u.Paths()[1] // 127.0.0.1
		kept.Health.Observe(time.Millisecond, transport.ClassTimeout)
		boot.Set("dns.test. 1 IN A 127.0.0.1\ndns.test. 1 IN AAAA ::2\n")
		want := []string{"ipv6 [::2]:5300", "ipv4 127.0.0.1:5300"}
		n := boot.Count()
		fc.Advance(time.Second - time.Millisecond)
		waitRefresh(t, fc)
		if boot.Count() != n {
			t.Fatal("re-resolved before the TTL ran out")
		}
		fc.Advance(time.Millisecond) // the TTL, 1s, has run out
		waitRefresh(t, fc)
		if got := addrsOf(u.Paths()); !slices.Equal(got, want) {
			t.Fatalf("paths = %v, want %v", got, want)
		}
		if u.Paths()[1] != kept || kept.Health.Snapshot().Consecutive != 1 {
			t.Fatalf("the path of an address that stayed was replaced or lost its health")
		}
	})

	t.Run("a failed re-resolution keeps the paths", func(t *testing.T) {
		boot := transporttest.StartBootstrap(t, both)
		u, fc := newUpstream(t, boot, transport.PinBoth, nil)
		before := addrsOf(u.Paths())
		boot.Set("other.test. 1 IN A 192.0.2.1\n") // dns.test now NXDOMAIN: no addresses
		n := boot.Count()
		fc.Advance(time.Second) // the TTL runs out: the lookup fails
		waitRefresh(t, fc)
		m := boot.Count()
		fc.Advance(50 * time.Millisecond) // RetryRefresh: it fails again
		waitRefresh(t, fc)
		if m < n+2 || boot.Count() < m+2 {
			t.Fatal("no re-resolution attempted")
		}
		if got := addrsOf(u.Paths()); !slices.Equal(got, before) {
			t.Fatalf("paths = %v after a failed resolution, want %v kept", got, before)
		}
	})
}
