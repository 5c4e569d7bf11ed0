package cache

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// crafted builds a response by hand: a header with id and flags, one
// question "a." A IN, then the bytes of records (an answers).
func crafted(id, flags uint16, an int, records ...byte) []byte {
	b := []byte{byte(id >> 8), byte(id), byte(flags >> 8), byte(flags), 0, 1, 0, byte(an), 0, 0, 0, 0,
		1, 'a', 0, 0, 1, 0, 1} // the question, 12..18
	return append(b, records...)
}

// withOPT appends an empty OPT record to b, a message without additional
// records.
func withOPT(b []byte) []byte {
	b[11] = 1
	return append(b, 0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0)
}

// TestStableNames: a message whose names read a byte a hit rewrites (the
// header, a TTL, OPT), where they lie or through pointers in any name or
// RDATA, is not stable; what servers pack is.
func TestStableNames(t *testing.T) {
	t.Parallel()
	const aRR = "a. 300 IN A 192.0.2.1"
	packedMsg := func(answer, ns, extra []string) []byte {
		m := new(dns.Msg)
		m.SetQuestion("a.", dns.TypeA)
		m.Response, m.Compress = true, true
		for _, sec := range []struct {
			rrs []string
			to  *[]dns.RR
		}{{answer, &m.Answer}, {ns, &m.Ns}, {extra, &m.Extra}} {
			for _, s := range sec.rrs {
				rr, err := dns.NewRR(s)
				if err != nil {
					t.Fatal(err)
				}
				*sec.to = append(*sec.to, rr)
			}
		}
		m.SetEdns0(1232, true)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		msg    []byte
		stable bool
	}{
		// Owner C0 19 (offset 25): its own TTL, 01 'a' 00 00, reads "a.".
		{"owner in its own TTL", crafted(1, 0x8180, 1,
			0xC0, 25, 0, 1, 0, 1, 1, 'a', 0, 0, 0, 4, 192, 0, 2, 1), false},
		// Owner C0 00: the ID (01 'a') and the flags (00) read "a.".
		{"owner in the header", crafted(0x0161, 0x0000, 1,
			0xC0, 0, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1), false},
		// The second owner points into the first record's RDATA, whose
		// bytes 01 'b' C0 25 go on to its TTL (00 00 01 2C).
		{"chain through RDATA to a TTL", crafted(1, 0x8180, 2,
			0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 1, 'b', 0xC0, 25, // at 19; TTL 25, RDATA 31
			0xC0, 31, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1), false},
		// A CNAME whose target is the record's own TTL (01 'c' 00 00).
		{"CNAME target in a TTL", crafted(1, 0x8180, 1,
			0xC0, 12, 0, 5, 0, 1, 1, 'c', 0, 0, 0, 2, 0xC0, 25), false},
		// NAPTR's replacement, found by scanning: order, preference,
		// three empty strings, then a pointer to the TTL.
		{"NAPTR replacement in a TTL", crafted(1, 0x8180, 1,
			0xC0, 12, 0, 35, 0, 1, 1, 'c', 0, 0, 0, 9, 0, 1, 0, 1, 0, 0, 0, 0xC0, 25), false},
		// An owner pointing at the OPT record's TYPE (00 29: the root).
		{"owner in OPT", withOPT(crafted(1, 0x8180, 1,
			0xC0, 36, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1)), false}, // OPT at 35, its TYPE at 36
		// An owner pointing at the OPT record's owner (00, the root): a
		// miss's reply to a client goes without that record.
		{"owner at OPT's owner", withOPT(crafted(1, 0x8180, 1,
			0xC0, 35, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1)), false},
		{"owner in the question", crafted(1, 0x8180, 1,
			0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1), true},
		{"packed: A", packedMsg([]string{aRR}, nil, nil), true},
		{"packed: CNAME, NS, glue", packedMsg([]string{
			"a. 300 IN CNAME b.example.org.", "b.example.org. 300 IN A 192.0.2.7",
		}, []string{"example.org. 3600 IN NS ns1.example.org."}, []string{"ns1.example.org. 3600 IN A 192.0.2.53"}), true},
		{"packed: MX, SRV, SOA, HTTPS", packedMsg([]string{
			"a. 300 IN MX 10 mail.a.",
			"a. 300 IN SRV 0 5 49164 mail.a.", // port C0 0C: no pointer, in SRV's fixed part
			"a. 300 IN HTTPS 1 svc.a. alpn=h2 ipv4hint=192.0.2.7",
		}, []string{"a. 3600 IN SOA ns.a. host.a. 3221225497 3600 600 86400 60"}, nil), true},
		{"packed: RRSIG and NSEC", packedMsg([]string{
			aRR,
			"a. 300 IN RRSIG A 13 1 300 20300101000000 20250101000000 12345 a. wBnAAMAZwADAGcAAwBnAAMAZwADAGcAAwBnAAMAZwADAGcAAwBnAAMAZwADAGcAAwBnAAMAZwADAGcAAwBnAAA==",
		}, []string{"a. 3600 IN NSEC z.a. A NS SOA RRSIG NSEC"}, nil), true},
		{"packed: TXT", packedMsg([]string{"a. 300 IN TXT \"\\192\\025\\192\\013\""}, nil, nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offs, err := ttlOffsets(tt.msg, nil)
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			if m := new(dns.Msg); m.Unpack(tt.msg) != nil {
				t.Fatalf("miekg/dns does not unpack the test's message: %v", m.Unpack(tt.msg))
			}
			if got := stableNames(tt.msg, offs); got != tt.stable {
				t.Errorf("stable %v, want %v", got, tt.stable)
			}
		})
	}
}

// TestUnstableWireRepacked: an upstream answer whose owner name is spelt
// by its own TTL is cached as miekg/dns packs the message it unpacked, so
// that a hit, its TTLs capped and lowered, still names what the miss did.
func TestUnstableWireRepacked(t *testing.T) {
	t.Parallel()
	wire := crafted(1, 0x8180, 1, 0xC0, 25, 0, 1, 0, 1, 1, 'a', 0, 0, 0, 4, 192, 0, 2, 1)
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now, MaxTTL: time.Hour})
	next := &wireNext{t: t, reply: func(req *pipeline.Request) *dns.Msg {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		m.Id = req.Msg.Id
		w := append([]byte(nil), wire...)
		binary.BigEndian.PutUint16(w, m.Id)
		req.Upstream = pipeline.UpstreamReply{Msg: m, Wire: w}
		return m
	}}
	h := c.Middleware()(next)
	q := query{name: "a."}
	miss, err := h.ServeDNS(t.Context(), q.request(t))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	hit, err := h.ServeDNS(t.Context(), q.request(t))
	if err != nil {
		t.Fatal(err)
	}
	if next.calls != 1 {
		t.Fatalf("next called %d times, want 1 (the answer cached)", next.calls)
	}
	if len(hit.Answer) != 1 || hit.Answer[0].Header().Name != miss.Answer[0].Header().Name {
		t.Fatalf("hit answers %v, the miss %v", hit.Answer, miss.Answer)
	}
	if ttl := hit.Answer[0].Header().Ttl; ttl != 3600-10 {
		t.Errorf("hit TTL %d, want the cap less 10 s", ttl)
	}
}

// BenchmarkStableNames is the check on a typical upstream answer: one A
// record and an OPT, names compressed.
func BenchmarkStableNames(b *testing.B) {
	m := new(dns.Msg)
	m.SetQuestion("m12345.bench.test.", dns.TypeA)
	m.Response = true
	rr, _ := dns.NewRR("m12345.bench.test. 3600 IN A 127.1.0.1")
	m.Answer = []dns.RR{rr}
	m.SetEdns0(1232, false)
	msg, offs := packWalked(b, m)
	for b.Loop() {
		if !stableNames(msg, offs) {
			b.Fatal("not stable")
		}
	}
}
