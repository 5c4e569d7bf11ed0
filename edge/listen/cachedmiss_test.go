package listen

import (
	"bytes"
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// TestAnswerUpstreamWire: a miss the upstream answered, sent from the
// upstream's bytes (pipeline.CachedReply for a miss), is byte for byte
// the reply built and packed the long way, for the answers and queries of
// TestAnswerCached; an answer whose bytes cannot go that way (an EDE, an
// OPT before another record, bytes after the last record) goes the long
// way.
func TestAnswerUpstreamWire(t *testing.T) {
	t.Parallel()
	answers, names, qtypes := cachedAnswers(t)
	glue, _ := dns.NewRR("opt.example.org. 300 IN A 192.0.2.9")
	reply := func(q *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = []dns.RR{glue}
		return m
	}
	answers = append(answers,
		cachedAnswer{"opt not last", func(q *dns.Msg) *dns.Msg {
			m := reply(q)
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, dns.Copy(glue))
			return m
		}, false},
		cachedAnswer{"upstream padding", func(q *dns.Msg) *dns.Msg {
			m := reply(q)
			m.SetEdns0(1232, true)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 17)}}
			return m
		}, true},
		cachedAnswer{"trailing bytes", reply, false},
	)
	for _, n := range []string{"opt not last", "upstream padding", "trailing bytes"} {
		names[n] = "opt.example.org."
	}
	serve := cachedServe(t)
	for _, kind := range []pipeline.Kind{pipeline.KindUDP, pipeline.KindDoT} {
		for _, a := range answers {
			qtype := qtypes[a.name]
			if qtype == 0 {
				qtype = dns.TypeA
			}
			for _, v := range cachedVariants() {
				t.Run(kind.String()+"/"+a.name+"/"+v.name, func(t *testing.T) {
					q := v.q(names[a.name], qtype)
					side := func(long bool) ([]byte, bool) {
						c, err := cache.New(cache.Config{MaxEntries: 16}, nil)
						if err != nil {
							t.Fatal(err)
						}
						defer c.Close()
						// As the forward stage returns an answer: with
						// the bytes it came in, names compressed, and
						// packed compressed the long way.
						up := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
							m := a.build(req.Msg)
							m.Compress = true
							w, err := m.Pack()
							if err != nil {
								t.Fatal(err)
							}
							if a.name == "trailing bytes" {
								w = append(w, 0, 0)
							}
							req.Outcome.Source = pipeline.SourceUpstream
							req.Upstream = pipeline.UpstreamReply{Msg: m, Wire: w}
							return m, nil
						})
						var saw bool
						cr := cachedSide(t, pipeline.Chain(up, c.Middleware()), long, kind, &saw)
						return serve(cr, q, v.size), saw
					}
					got, used := side(false)
					want, _ := side(true)
					if !bytes.Equal(got, want) {
						var gm, wm dns.Msg
						gm.Unpack(got)
						wm.Unpack(want)
						t.Fatalf("from the upstream's bytes (%d):\n%v\nthe long way (%d):\n%v", len(got), &gm, len(want), &wm)
					}
					if used != a.wire {
						t.Errorf("wire form offered: %v, want %v", used, a.wire)
					}
				})
			}
		}
	}
}
