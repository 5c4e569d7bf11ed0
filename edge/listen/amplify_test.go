package listen

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// bigAnswers answers each query type with a big RRset, the kinds an
// attacker picks for amplification: TXT, DNSKEY with signatures when DO is
// set, many A records, and ANY with all of them.
func bigAnswers(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	q := req.Question()
	m := new(dns.Msg)
	m.SetReply(req.Msg)
	do := req.Msg.IsEdns0() != nil && req.Msg.IsEdns0().Do()
	txt := func() {
		for i := range 20 {
			m.Answer = append(m.Answer, mustRR(fmt.Sprintf(`%s 60 IN TXT "%02d %s"`, q.Name, i, strings.Repeat("t", 200))))
		}
	}
	dnskey := func() {
		for i := range 6 {
			m.Answer = append(m.Answer, mustRR(fmt.Sprintf("%s 60 IN DNSKEY 257 3 8 %s", q.Name, strings.Repeat("AwEAAa"+fmt.Sprint(i), 40))))
		}
		if do {
			for range 3 {
				m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN RRSIG DNSKEY 8 1 60 20300101000000 20200101000000 1 "+q.Name+" "+strings.Repeat("c2lnbmF0dXJl", 30)))
			}
		}
	}
	many := func() {
		for i := range 200 {
			m.Answer = append(m.Answer, mustRR(fmt.Sprintf("%s 60 IN A 198.51.%d.%d", q.Name, i/250, i%250)))
		}
	}
	switch q.Qtype {
	case dns.TypeTXT:
		txt()
	case dns.TypeDNSKEY:
		dnskey()
	case dns.TypeA:
		many()
	case dns.TypeANY:
		txt()
		dnskey()
		many()
	}
	return m, nil
}

// TestUDPAmplification sends the short queries of an amplification attack
// and checks that every UDP answer that does not fit the client's size
// costs no more bytes than the query did.
func TestUDPAmplification(t *testing.T) {
	t.Parallel()
	s := start(t, "udp", testConfig(t, fam4, &fakeHandler{t: t, serve: bigAnswers}))
	types := []uint16{dns.TypeTXT, dns.TypeDNSKEY, dns.TypeA, dns.TypeANY}
	type variant struct {
		name string
		q    func(name string, qtype uint16) *dns.Msg
	}
	variants := []variant{
		{"no EDNS", query},
		{"EDNS 1232", func(n string, qt uint16) *dns.Msg { return queryEDNS(n, qt, 1232, false) }},
		{"EDNS 4096 DO", func(n string, qt uint16) *dns.Msg { return queryEDNS(n, qt, 4096, true) }},
	}
	for _, qt := range types {
		for _, v := range variants {
			t.Run(dns.Type(qt).String()+" "+v.name, func(t *testing.T) {
				t.Parallel()
				wire, err := v.q("x.example.", qt).Pack()
				if err != nil {
					t.Fatal(err)
				}
				b, err := exchangeRaw("udp", s.Addr(), wire, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				r := new(dns.Msg)
				if err := r.Unpack(b); err != nil {
					t.Fatal(err)
				}
				if !r.Truncated {
					t.Fatalf("answer of %d bytes not truncated; the test needs answers that do not fit", len(b))
				}
				ratio := float64(len(b)) / float64(len(wire))
				t.Logf("%d bytes in, %d out: %.2fx", len(wire), len(b), ratio)
				if ratio > 1.0 {
					t.Errorf("amplification %.2fx (%d bytes in, %d out), want at most 1.0", ratio, len(wire), len(b))
				}
				if (r.IsEdns0() == nil) != (v.q("x.", qt).IsEdns0() == nil) {
					t.Errorf("EDNS of the reply does not follow the query")
				}
			})
		}
	}
}

// FuzzTruncatedReply finishes a big answer to any query the UDP listener
// would serve and checks that a reply that does not fit the client's size
// is never bigger than the query, and that every reply packs within it.
func FuzzTruncatedReply(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		if act, _ := checkHeader(wire); act != actServe {
			return
		}
		q, act := parseQuery(wire)
		if act != actServe || len(q.Question) != 1 {
			return
		}
		req := &pipeline.Request{Msg: q, Wire: wire, MaxSize: udpSize(q), Listener: pipeline.KindUDP}
		m, _ := bigAnswers(context.Background(), req)
		r, send := Finish(req, m, nil, nil)
		if !send {
			t.Fatal("big answer not sent")
		}
		b, err := r.Pack()
		if err != nil {
			return // a question the packer refuses: the listener answers SERVFAIL
		}
		if len(b) > req.MaxSize {
			t.Fatalf("reply of %d bytes, client takes %d", len(b), req.MaxSize)
		}
		if r.Truncated && len(b) > len(wire) {
			t.Fatalf("truncated reply of %d bytes to a query of %d:\n%v", len(b), len(wire), r)
		}
	})
}
