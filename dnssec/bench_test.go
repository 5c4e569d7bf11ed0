package dnssec

import (
	"context"
	"fmt"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// BenchmarkValidateWarm validates a secure A answer with the chain of
// trust already in the key cache: the cost per answer, by algorithm.
func BenchmarkValidateWarm(b *testing.B) {
	for _, alg := range []uint8{dns.ECDSAP256SHA256, dns.RSASHA256} {
		b.Run(fmt.Sprintf("alg=%d", alg), func(b *testing.B) {
			w := newWorld(b, testNow,
				testZone{name: ".", alg: alg},
				testZone{name: "ok.", alg: alg, records: "www.ok. 3600 IN A 192.0.2.1"})
			v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}, w)
			if err != nil {
				b.Fatal(err)
			}
			q := dns.Question{Name: "www.ok.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
			resp := w.query("www.ok.", dns.TypeA)
			if r := v.Validate(context.Background(), q, resp); r.Verdict != Secure {
				b.Fatalf("warm-up: %+v", r)
			}
			fetches := w.fetches.Load()
			b.ReportAllocs()
			for b.Loop() {
				if r := v.Validate(context.Background(), q, resp); r.Verdict != Secure {
					b.Fatalf("%+v", r)
				}
			}
			if w.fetches.Load() != fetches {
				b.Fatal("the warm benchmark fetched keys")
			}
		})
	}
}

// BenchmarkVerify is the verify step alone, one RRSIG over one A record,
// by algorithm: ours (key parsed once) and, for the algorithms it knows,
// miekg/dns's RRSIG.Verify (key decoded on every call) for comparison.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []uint8{dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512,
		dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519, dns.ED448} {
		k := newTestKey(b, "example.com.", alg)
		rrs := []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
			A: []byte{192, 0, 2, 1}}}
		sig := k.sign(b, rrs)
		pk := newPubKey(k.rr)
		b.Run(fmt.Sprintf("alg=%d", alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := verifySig(pk, sig, rrs); err != nil {
					b.Fatal(err)
				}
			}
		})
		if alg == dns.ED448 {
			continue
		}
		b.Run(fmt.Sprintf("alg=%d/miekg", alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := sig.Verify(k.rr, rrs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
