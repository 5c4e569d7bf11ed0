package listen

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkDoQ measures a query round trip through the DoQ listener on
// one connection with a trivial handler, one query at a time and many in
// parallel (one stream each). allocs/op counts the client too.
func BenchmarkDoQ(b *testing.B) {
	h := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		return m, nil
	})
	cfg := Config{Addr: fam4.addr, Handler: func() pipeline.Handler { return h }}
	l := startDoQ(b, cfg)
	c := l.dial(b, "dns.test")
	q := query("example.org.", dns.TypeA)
	ask := func(b *testing.B) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Exchange(ctx, q); err != nil {
			b.Error(err)
			return false
		}
		return true
	}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !ask(b) {
				return
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !ask(b) {
					return
				}
			}
		})
	})
}
