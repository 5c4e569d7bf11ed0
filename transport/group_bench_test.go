package transport_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
)

// instant answers every query at once, as a nearby upstream would.
type instant struct{}

func (instant) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	return m, nil
}
func (instant) Close() error { return nil }

// BenchmarkGroupExchange is the forwarding path's cost above the
// exchangers: ordering, breakers, the race and health accounting, for a
// group of two upstreams with two families each, the first path
// answering, and for one upstream with one path (a sidecar's), whose
// attempt runs on the caller's goroutine.
func BenchmarkGroupExchange(b *testing.B) {
	for _, bc := range []struct {
		name  string
		addrs []string
	}{
		{"four paths", []string{"::1", "127.0.0.1", "::2", "127.0.0.2"}},
		{"one path", []string{"127.0.0.1"}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchGroupExchange(b, bc.addrs) })
	}
}

func benchGroupExchange(b *testing.B, addrs []string) {
	reg := transport.NewRegistry(transport.HealthConfig{}, nil)
	var ups []*transport.Upstream
	for _, a := range addrs {
		u, err := transport.NewUpstream(transport.UpstreamConfig{
			Name:     "u" + a,
			Endpoint: transport.Endpoint{Scheme: "udp", Addr: netip.MustParseAddr(a), Port: 53},
		}, transport.UpstreamDeps{Registry: reg})
		if err != nil {
			b.Fatal(err)
		}
		u.Paths()[0].Exchanger = instant{}
		ups = append(ups, u)
	}
	s, _ := transport.NewStrategy("sequential")
	g := transport.NewGroup("default", s, transport.RaceConfig{}, ups...)
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
