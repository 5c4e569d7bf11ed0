package listen

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/cache"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// cachedAnswer is an upstream answer of TestAnswerCached, and whether its
// hits come with a wire form.
type cachedAnswer struct {
	name  string
	build func(q *dns.Msg) *dns.Msg
	wire  bool
}

// cachedVariant is a query of TestAnswerCached: how it is built, the
// client's size, and whether its hits have no wire form whatever the
// answer.
type cachedVariant struct {
	name   string
	q      func(name string, qtype uint16) *dns.Msg
	size   int
	noWire bool
}

// TestAnswerCached: a cache hit sent from the cache's wire form is, byte
// for byte, the reply built and packed the long way, for answers of every
// shape and queries with and without EDNS, DO, CD, AD, RD, and for sizes
// that truncate; and the wire form is used where it should be.
func TestAnswerCached(t *testing.T) {
	t.Parallel()
	answers, names, qtypes := cachedAnswers(t)
	byName := map[string]cachedAnswer{}
	for _, a := range answers {
		byName[names[a.name]] = a
	}
	c, err := cache.New(cache.Config{MaxEntries: 1024}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	up := pipeline.HandlerFunc(func(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
		a := byName[strings.ToLower(req.Msg.Question[0].Name)]
		req.Outcome.Source = pipeline.SourceUpstream
		return a.build(req.Msg), nil
	})
	chain := pipeline.Chain(up, c.Middleware())
	var sawWire bool
	serve := cachedServe(t)
	for _, kind := range []pipeline.Kind{pipeline.KindUDP, pipeline.KindDoT} {
		// DoT pads its replies (RFC 8467).
		short, long := cachedSide(t, chain, false, kind, &sawWire), cachedSide(t, chain, true, kind, &sawWire)
		testAnswerCached(t, short, long, answers, names, qtypes, cachedVariants(), serve, &sawWire)
	}
}

// cachedAnswers returns the upstream answers of TestAnswerCached, the
// name each answers and the type of the name's query where it is not A.
func cachedAnswers(t *testing.T) ([]cachedAnswer, map[string]string, map[string]uint16) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	reply := func(q *dns.Msg, rcode int, sections ...[]string) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(q, rcode)
		m.RecursionAvailable = true
		for i, sec := range sections {
			for _, s := range sec {
				r := rr(s)
				switch i {
				case 0:
					m.Answer = append(m.Answer, r)
				case 1:
					m.Ns = append(m.Ns, r)
				case 2:
					m.Extra = append(m.Extra, r)
				}
			}
		}
		return m
	}
	withOpt := func(m *dns.Msg, opts ...dns.EDNS0) *dns.Msg {
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = opts
		return m
	}
	var txt []string
	for i := range 40 {
		txt = append(txt, fmt.Sprintf("big.example.org. 300 IN TXT \"%s\"", strings.Repeat(string(rune('a'+i%26)), 40)))
	}
	answers := []cachedAnswer{
		{"a", func(q *dns.Msg) *dns.Msg {
			return reply(q, dns.RcodeSuccess, []string{"a.example.org. 300 IN A 192.0.2.1"})
		}, true},
		{"cname chain", func(q *dns.Msg) *dns.Msg {
			return reply(q, dns.RcodeSuccess, []string{"chain.example.org. 300 IN CNAME www.example.org.",
				"www.example.org. 300 IN CNAME edge.example.org.", "edge.example.org. 60 IN A 192.0.2.7", "edge.example.org. 60 IN A 192.0.2.8"})
		}, true},
		{"nxdomain", func(q *dns.Msg) *dns.Msg {
			return reply(q, dns.RcodeNameError, nil, []string{"example.org. 300 IN SOA ns.example.org. hm.example.org. 1 3600 600 86400 300"})
		}, true},
		{"glue", func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, []string{"glue.example.org. 300 IN NS ns1.example.org."}, nil,
				[]string{"ns1.example.org. 300 IN A 192.0.2.53", "ns1.example.org. 300 IN AAAA 2001:db8::53"})
			m.Authoritative = true
			return m
		}, true},
		{"upstream cookie", func(q *dns.Msg) *dns.Msg {
			return withOpt(reply(q, dns.RcodeSuccess, []string{"cookie.example.org. 300 IN A 192.0.2.2"}),
				&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef0123456789abcdef"})
		}, true},
		{"upstream ede", func(q *dns.Msg) *dns.Msg {
			return withOpt(reply(q, dns.RcodeSuccess, []string{"ede.example.org. 300 IN A 192.0.2.3"}),
				&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "from upstream"})
		}, false},
		{"big", func(q *dns.Msg) *dns.Msg { return reply(q, dns.RcodeSuccess, txt) }, true},
		{"authentic", func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, []string{"ad.example.org. 300 IN A 192.0.2.4"})
			m.AuthenticatedData = true
			return m
		}, true},
	}
	names := map[string]string{"a": "a.example.org.", "cname chain": "chain.example.org.", "nxdomain": "nx.example.org.",
		"glue": "glue.example.org.", "upstream cookie": "cookie.example.org.", "upstream ede": "ede.example.org.",
		"big": "big.example.org.", "authentic": "ad.example.org."}
	qtypes := map[string]uint16{"glue": dns.TypeNS, "big": dns.TypeTXT}
	return answers, names, qtypes
}

// cachedSide is a listener's core in front of chain that answers the
// short way when it can, or with long the long way always; the short
// side records in sawWire whether the cache offered a wire form.
func cachedSide(t *testing.T, chain pipeline.Handler, long bool, kind pipeline.Kind, sawWire *bool) *core {
	h := pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := chain.ServeDNS(ctx, req)
		if long {
			req.Cached = pipeline.CachedReply{}
		} else {
			*sawWire = req.Cached.WireOf(m) != nil
		}
		return m, err
	})
	cfg := Config{Addr: netip.MustParseAddrPort("127.0.0.1:53"), Handler: func() pipeline.Handler { return h },
		Metrics: newMetrics(prometheus.NewRegistry(), false)}
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return newCore(cfg, kind)
}

// cachedVariants are the queries of TestAnswerCached.
func cachedVariants() []cachedVariant {
	return []cachedVariant{
		{"no edns", func(n string, t uint16) *dns.Msg { return query(n, t) }, 512, false},
		{"edns", func(n string, t uint16) *dns.Msg { return queryEDNS(n, t, 1232, false) }, 1232, false},
		{"do", func(n string, t uint16) *dns.Msg { return queryEDNS(n, t, 4096, true) }, 4096, false},
		{"cd, rd clear", func(n string, t uint16) *dns.Msg {
			q := queryEDNS(n, t, 1232, true)
			q.CheckingDisabled, q.RecursionDesired = true, false
			return q
		}, 1232, false},
		{"ad without do", func(n string, t uint16) *dns.Msg {
			q := query(n, t)
			q.AuthenticatedData = true
			return q
		}, 512, false},
		{"edns 512", func(n string, t uint16) *dns.Msg { return queryEDNS(n, t, 512, false) }, 512, false},
		// Another spelling of a name whose template is spelled as the
		// first query was: answered the long way (see cache.answer).
		{"case", func(n string, t uint16) *dns.Msg { return queryEDNS(strings.ToUpper(n[:3])+n[3:], t, 1232, false) }, 1232, true},
	}
}

// cachedServe returns a function that answers q on cr for a client that
// takes size bytes, and returns the reply's bytes.
func cachedServe(t *testing.T) func(cr *core, q *dns.Msg, size int) []byte {
	return func(cr *core, q *dns.Msg, size int) []byte {
		// Pooled buffers come back dirty: what the reply does not write
		// must not show.
		for _, n := range bufSizes[:2] {
			d := getBufFor(n)
			for i := range *d {
				(*d)[i] = 0xa5
			}
			putBuf(d)
		}
		req := &pipeline.Request{Msg: q, Client: netip.MustParseAddrPort("127.0.0.1:40000"), Listener: pipeline.KindUDP,
			Received: time.Now(), MaxSize: size}
		b, buf := cr.answer(req, 0)
		if buf == nil {
			t.Fatalf("no reply to %v", q.Question)
		}
		out := bytes.Clone(b)
		putBuf(buf)
		return out
	}
}

func testAnswerCached(t *testing.T, short, long *core, answers []cachedAnswer, names map[string]string,
	qtypes map[string]uint16, variants []cachedVariant, serve func(*core, *dns.Msg, int) []byte, sawWire *bool) {
	for _, a := range answers {
		name := names[a.name]
		qtype := qtypes[a.name]
		if qtype == 0 {
			qtype = dns.TypeA
		}
		for _, v := range variants {
			t.Run(short.kind.String()+"/"+a.name+"/"+v.name, func(t *testing.T) {
				q := v.q(name, qtype)
				serve(short, q, v.size) // fills the cache
				serve(short, q, v.size) // and the template, for this spelling
				got := serve(short, q, v.size)
				used := *sawWire
				want := serve(long, q, v.size)
				if !bytes.Equal(got, want) {
					var gm, wm dns.Msg
					gm.Unpack(got)
					wm.Unpack(want)
					t.Fatalf("from the wire form (%d bytes):\n%v\nthe long way (%d bytes):\n%v", len(got), &gm, len(want), &wm)
				}
				if want := a.wire && !v.noWire; used != want {
					t.Errorf("wire form used: %v, want %v", used, want)
				}
			})
		}
	}
}
