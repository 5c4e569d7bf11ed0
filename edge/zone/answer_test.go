package zone

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestAnswer(t *testing.T) {
	t.Parallel()
	z := mustParse(t, "example.", exampleZone)
	const (
		wwwA    = "www.example. 300 IN A 192.0.2.1"
		wwwSig  = "www.example. 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 example. dGVzdA=="
		soaSig  = "example. 120 IN RRSIG SOA 13 1 300 20300101000000 20200101000000 12345 example. dGVzdA=="
		glue    = "ns.deleg.example. 300 IN A 192.0.2.100"
		delegNS = "deleg.example. 300 IN NS ns.deleg.example."
		otherNS = "deleg.example. 300 IN NS ns.elsewhere.org."
		delegDS = "deleg.example. 300 IN DS 12345 13 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE8F1C4F1B9A2C7E6D2E9A8B1C"
		dsSig   = "deleg.example. 300 IN RRSIG DS 13 2 300 20300101000000 20200101000000 12345 example. dGVzdA=="
	)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		do     bool
		rcode  int
		notAA  bool // a referral
		answer []string
		ns     []string
		extra  []string
	}{
		{name: "exact", qname: "www.example.", qtype: dns.TypeA, answer: []string{wwwA}},
		{name: "exact AAAA", qname: "www.example.", qtype: dns.TypeAAAA, answer: []string{"www.example. 300 IN AAAA 2001:db8::1"}},
		{name: "case insensitive, query case kept", qname: "WwW.ExAmPle.", qtype: dns.TypeA,
			answer: []string{"WwW.ExAmPle. 300 IN A 192.0.2.1"}},
		{name: "NODATA", qname: "www.example.", qtype: dns.TypeTXT, ns: []string{soaNeg}},
		{name: "empty non-terminal is NODATA", qname: "b.c.example.", qtype: dns.TypeA, ns: []string{soaNeg}},
		{name: "empty non-terminal one up", qname: "c.example.", qtype: dns.TypeA, ns: []string{soaNeg}},
		{name: "below an empty non-terminal", qname: "a.b.c.example.", qtype: dns.TypeA, answer: []string{"a.b.c.example. 300 IN A 192.0.2.9"}},
		{name: "NXDOMAIN", qname: "nope.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "NXDOMAIN below a leaf", qname: "x.www.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "apex MX with additional", qname: "example.", qtype: dns.TypeMX,
			answer: []string{"example. 300 IN MX 10 mail.example."}, extra: []string{"mail.example. 300 IN A 192.0.2.25"}},
		{name: "apex NS with additional", qname: "example.", qtype: dns.TypeNS,
			answer: []string{"example. 300 IN NS ns1.example."}, extra: []string{"ns1.example. 300 IN A 192.0.2.53"}},
		{name: "CNAME", qname: "alias.example.", qtype: dns.TypeA,
			answer: []string{"alias.example. 300 IN CNAME www.example.", wwwA}},
		{name: "CNAME chain", qname: "chain1.example.", qtype: dns.TypeA,
			answer: []string{"chain1.example. 300 IN CNAME chain2.example.", "chain2.example. 300 IN CNAME www.example.", wwwA}},
		{name: "CNAME to NODATA", qname: "alias.example.", qtype: dns.TypeTXT,
			answer: []string{"alias.example. 300 IN CNAME www.example."}, ns: []string{soaNeg}},
		{name: "CNAME to NXDOMAIN", qname: "dangling.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError,
			answer: []string{"dangling.example. 300 IN CNAME nothere.example."}, ns: []string{soaNeg}},
		{name: "CNAME loop stops", qname: "loop1.example.", qtype: dns.TypeA,
			answer: []string{"loop1.example. 300 IN CNAME loop2.example.", "loop2.example. 300 IN CNAME loop1.example."}},
		{name: "CNAME out of zone stops", qname: "outside.example.", qtype: dns.TypeA,
			answer: []string{"outside.example. 300 IN CNAME www.example.org."}},
		{name: "qtype CNAME not chased", qname: "alias.example.", qtype: dns.TypeCNAME,
			answer: []string{"alias.example. 300 IN CNAME www.example."}},
		{name: "ANY not chased", qname: "alias.example.", qtype: dns.TypeANY,
			answer: []string{"alias.example. 300 IN CNAME www.example."}},
		{name: "ANY returns one RRset, the smallest", qname: "www.example.", qtype: dns.TypeANY,
			answer: []string{wwwA}},
		{name: "ANY with DO adds its signatures", qname: "www.example.", qtype: dns.TypeANY, do: true,
			answer: []string{wwwA, wwwSig}},
		{name: "wildcard", qname: "host.wild.example.", qtype: dns.TypeA,
			answer: []string{"host.wild.example. 300 IN A 192.0.2.77"}},
		{name: "wildcard deeper", qname: "a.b.wild.example.", qtype: dns.TypeTXT,
			answer: []string{`a.b.wild.example. 300 IN TXT "wild"`}},
		{name: "wildcard NODATA", qname: "host.wild.example.", qtype: dns.TypeMX, ns: []string{soaNeg}},
		{name: "wildcard does not answer an existing name", qname: "sub.wild.example.", qtype: dns.TypeTXT, ns: []string{soaNeg}},
		{name: "wildcard does not match below an existing name", qname: "x.sub.wild.example.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "wildcard name itself", qname: "*.wild.example.", qtype: dns.TypeA,
			answer: []string{"*.wild.example. 300 IN A 192.0.2.77"}},
		{name: "wildcard CNAME chased", qname: "foo.cwild.example.", qtype: dns.TypeA,
			answer: []string{"foo.cwild.example. 300 IN CNAME www.example.", wwwA}},
		{name: "referral", qname: "host.deleg.example.", qtype: dns.TypeA, notAA: true,
			ns: []string{delegNS, otherNS}, extra: []string{glue}},
		{name: "referral at the cut", qname: "deleg.example.", qtype: dns.TypeNS, notAA: true,
			ns: []string{delegNS, otherNS}, extra: []string{glue}},
		{name: "glue is below the cut too", qname: "ns.deleg.example.", qtype: dns.TypeA, notAA: true,
			ns: []string{delegNS, otherNS}, extra: []string{glue}},
		{name: "referral with DO carries DS", qname: "host.deleg.example.", qtype: dns.TypeA, do: true, notAA: true,
			ns: []string{delegNS, otherNS, delegDS, dsSig}, extra: []string{glue}},
		{name: "DS at the cut from the parent side", qname: "deleg.example.", qtype: dns.TypeDS,
			answer: []string{delegDS}},
		{name: "DS below the cut is a referral", qname: "x.deleg.example.", qtype: dns.TypeDS, notAA: true,
			ns: []string{delegNS, otherNS}, extra: []string{glue}},
		{name: "DO adds RRSIGs", qname: "www.example.", qtype: dns.TypeA, do: true, answer: []string{wwwA, wwwSig}},
		{name: "DO on an unsigned RRset", qname: "www.example.", qtype: dns.TypeAAAA, do: true,
			answer: []string{"www.example. 300 IN AAAA 2001:db8::1"}},
		{name: "DO negative carries the signed SOA", qname: "nope.example.", qtype: dns.TypeA, do: true,
			rcode: dns.RcodeNameError, ns: []string{soaNeg, soaSig}},
		{name: "no RRSIGs without DO", qname: "nope.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soaNeg}},
		{name: "qtype RRSIG", qname: "www.example.", qtype: dns.TypeRRSIG, answer: []string{wwwSig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := query(tt.qname, tt.qtype, tt.do)
			m := z.Answer(q)
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if m.Authoritative == tt.notAA {
				t.Errorf("AA = %v, want %v", m.Authoritative, !tt.notAA)
			}
			if !m.Response || !m.RecursionAvailable || m.Id != q.Id {
				t.Errorf("header %+v: want QR, RA and the query's id", m.MsgHdr)
			}
			if len(m.Question) != 1 || m.Question[0] != q.Question[0] {
				t.Errorf("question %v, want %v", m.Question, q.Question)
			}
			for _, s := range []struct {
				name      string
				got, want []string
			}{{"answer", texts(m.Answer), canon(t, tt.answer)}, {"authority", texts(m.Ns), canon(t, tt.ns)}, {"additional", texts(m.Extra), canon(t, tt.extra)}} {
				if !sameRRs(s.got, s.want) {
					t.Errorf("%s:\n got %q\nwant %q", s.name, s.got, s.want)
				}
			}
		})
	}
}

// TestAnswerNegativeTTL checks that negative answers carry the SOA with
// the lower of its TTL and MINIMUM (RFC 2308 §3), whichever is lower.
func TestAnswerNegativeTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		records []string
		want    uint32
	}{
		{name: "minimum lower", records: []string{"@ 3600 IN SOA ns hm 1 2 3 4 30"}, want: 30},
		{name: "TTL lower", records: []string{"@ 60 IN SOA ns hm 1 2 3 4 3600"}, want: 60},
		{name: "synthesized SOA", records: []string{"www A 192.0.2.1"}, want: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z, err := FromRecords("example.", tt.records)
			if err != nil {
				t.Fatal(err)
			}
			m := z.Answer(query("nope.example.", dns.TypeA, false))
			if m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
				t.Fatalf("got %v", m)
			}
			if got := m.Ns[0].Header().Ttl; got != tt.want {
				t.Errorf("SOA TTL %d, want %d", got, tt.want)
			}
		})
	}
}

func TestAnswerCNAMEChainBound(t *testing.T) {
	t.Parallel()
	var recs []string
	for i := range 12 {
		recs = append(recs, fmt.Sprintf("c%d CNAME c%d", i, i+1))
	}
	recs = append(recs, "c12 A 192.0.2.1")
	z, err := FromRecords("example.", recs)
	if err != nil {
		t.Fatal(err)
	}
	m := z.Answer(query("c0.example.", dns.TypeA, false))
	if len(m.Answer) != MaxChase || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("got %d records, rcode %d; want %d CNAMEs, NOERROR:\n%v", len(m.Answer), m.Rcode, MaxChase, m)
	}
	for _, rr := range m.Answer {
		if rr.Header().Rrtype != dns.TypeCNAME {
			t.Errorf("unexpected %v", rr)
		}
	}
}

// TestAnswerSharesNothing checks that changing an answer does not change
// the zone.
func TestAnswerSharesNothing(t *testing.T) {
	t.Parallel()
	z := mustParse(t, "example.", exampleZone)
	m := z.Answer(query("www.example.", dns.TypeA, false))
	m.Answer[0].Header().Ttl = 1
	m.Answer[0].(*dns.A).A[3] = 99
	again := z.Answer(query("www.example.", dns.TypeA, false))
	if got := again.Answer[0].String(); !strings.Contains(got, "300") || !strings.HasSuffix(got, "192.0.2.1") {
		t.Errorf("zone changed through an answer: %s", got)
	}
}

func TestAnswerOutsideZone(t *testing.T) {
	t.Parallel()
	z := mustParse(t, "example.", exampleZone)
	if m := z.Answer(query("www.example.org.", dns.TypeA, false)); m.Rcode != dns.RcodeRefused || m.Authoritative {
		t.Errorf("got %v, want REFUSED without AA", m)
	}
	if m := z.Answer(new(dns.Msg)); m.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: rcode %d, want FORMERR", m.Rcode)
	}
}

func TestAnswerRootZone(t *testing.T) {
	t.Parallel()
	z, err := FromRecords(".", []string{"* 60 IN A 127.0.0.1", "tld 60 IN NS ns.tld", "ns.tld 60 IN A 127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	if m := z.Answer(query("anything.", dns.TypeA, false)); len(m.Answer) != 1 {
		t.Errorf("wildcard at the root: %v", m)
	}
	if m := z.Answer(query("a.tld.", dns.TypeA, false)); m.Authoritative || len(m.Ns) != 1 || len(m.Extra) != 1 {
		t.Errorf("referral under the root: %v", m)
	}
	if m := z.Answer(query(".", dns.TypeSOA, false)); len(m.Answer) != 1 {
		t.Errorf("root SOA: %v", m)
	}
}

// TestNameBytesKept is a fuzz crasher made a case: names are folded for
// ASCII case only (RFC 4343). strings.ToLower writes U+FFFD for every byte
// that is not UTF-8, which made distinct names one (and long names too
// long to pack, as the fuzzer found).
func TestNameBytesKept(t *testing.T) {
	z, err := Parse("example.", strings.NewReader("\xa7 A 192.0.2.1\n\xa8 A 192.0.2.2\n"), "bytes.zone")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, want string }{
		{"\xa7.example.", "192.0.2.1"},
		{"\xa8.example.", "192.0.2.2"},
	} {
		m := z.Answer(query(tt.name, dns.TypeA, false))
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != tt.want {
			t.Errorf("%q: answer\n%v\nwant only %s", tt.name, m, tt.want)
		}
		if _, err := m.Pack(); err != nil {
			t.Errorf("%q: answer does not pack: %v", tt.name, err)
		}
	}
}

func TestAnswerANYSmallestSet(t *testing.T) {
	t.Parallel()
	z := mustParse(t, "example.", `$ORIGIN example.
$TTL 300
@ IN SOA ns.example. host.example. 1 3600 600 86400 60
@ IN NS ns.example.
ns IN A 192.0.2.53
big IN TXT "`+strings.Repeat("x", 200)+`"
big IN TXT "`+strings.Repeat("y", 200)+`"
big IN MX 10 mail.example.
big IN MX 20 mail2.example.
big IN AAAA 2001:db8::2
`)
	q := new(dns.Msg)
	q.SetQuestion("big.example.", dns.TypeANY)
	m := z.Answer(q)
	if len(m.Answer) != 1 {
		t.Fatalf("ANY got %d records, want the one smallest RRset:\n%v", len(m.Answer), m)
	}
	if got := m.Answer[0].Header().Rrtype; got != dns.TypeAAAA {
		t.Errorf("ANY answered %s, want the smallest RRset (AAAA)", dns.Type(got))
	}
}
