package validate

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/dnssec"
	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// BenchmarkHit compares cache hits of validated answers with hits of
// unvalidated ones: the verdict is stored with the entry, so the two
// should cost the same.
func BenchmarkHit(b *testing.B) {
	for _, validated := range []bool{false, true} {
		name := "plain"
		if validated {
			name = "validated"
		}
		b.Run(name, func(b *testing.B) {
			c, err := cache.New(cache.Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			mws := []pipeline.Middleware{c.Middleware()}
			if validated {
				fv := &fakeValidator{t: b, validate: func(dns.Question, *dns.Msg) dnssec.Result {
					return dnssec.Result{Verdict: dnssec.Secure, TTL: 3600}
				}}
				mw, _ := newValidation(fv, &fetcher{now: time.Now}, nil, time.Now).Bind()
				mws = append(mws, mw)
			}
			h := pipeline.Chain(signedUpstream(b), mws...)
			req := request(qflags{do: true})
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r := pipeline.Request{Msg: req.Msg, Listener: pipeline.KindUDP}
				m, err := h.ServeDNS(context.Background(), &r)
				if err != nil || r.Outcome.Source != pipeline.SourceCache || (validated && !m.AuthenticatedData) {
					b.Fatalf("not a hit: %v %v %v", m, err, r.Outcome)
				}
			}
		})
	}
}
