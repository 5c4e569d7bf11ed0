package listen

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkHistograms is the paired measure of what the latency
// histograms cost a query: the same cache hit and the same cache miss
// (answered by an in-process upstream, then cached) served through a
// listener core, finished and packed as the UDP listener does, with the
// listener metrics on and the histograms off, then on. No socket is
// involved, so the difference is not lost in the kernel's noise; the
// cpu-ns/op of each pair give the ratio.
//
//	go test -run '^$' -bench BenchmarkHistograms -count 6 ./edge/listen/ | benchstat -col /histograms -
func BenchmarkHistograms(b *testing.B) {
	for _, kind := range []string{"hit", "miss"} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/histograms=%v", kind, on), func(b *testing.B) {
				benchServe(b, kind == "miss", on)
			})
		}
	}
}

func benchServe(b *testing.B, miss, histograms bool) {
	// A cache that holds 1024 answers, cycled through 1<<14 names for
	// misses: each of them misses, is answered and evicts another.
	c, err := cache.New(cache.Config{MaxEntries: 1024}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	up := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		name := req.Msg.Question[0].Name
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: []byte{192, 0, 2, 1}}}
		req.Outcome.Source = pipeline.SourceUpstream
		return m, nil
	})
	h := pipeline.Chain(up, c.Middleware())
	cfg := Config{
		Addr:    netip.MustParseAddrPort("127.0.0.1:53"),
		Handler: func() pipeline.Handler { return h },
		Metrics: newMetrics(prometheus.NewRegistry(), histograms),
	}
	if cfg, err = cfg.withDefaults(); err != nil {
		b.Fatal(err)
	}
	core := newCore(cfg, pipeline.KindUDP)
	names := 1
	if miss {
		names = 1 << 14
	}
	qs := make([]*dns.Msg, names)
	for i := range qs {
		qs[i] = queryEDNS(fmt.Sprintf("host%d.example.org.", i), dns.TypeA, 1232, false)
	}
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	serve := func(q *dns.Msg) {
		req := &pipeline.Request{Msg: q, Client: client, Listener: pipeline.KindUDP, Received: time.Now(), MaxSize: 1232}
		if b, buf := core.answer(req, 0); buf != nil {
			_ = b
			putBuf(buf)
		}
	}
	if !miss {
		serve(qs[0]) // cached before timing
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		serve(qs[i%names])
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkObserveLatency is the cost of recording one query in the
// latency histograms alone, to set against the CPU a query takes.
func BenchmarkObserveLatency(b *testing.B) {
	km := newMetrics(prometheus.NewRegistry(), true).kind(pipeline.KindUDP)
	req := &pipeline.Request{Listener: pipeline.KindUDP}
	req.Outcome.Source, req.Outcome.Latency = pipeline.SourceCache, 180*time.Microsecond
	b.ReportAllocs()
	for b.Loop() {
		km.served(req, nil)
	}
}
