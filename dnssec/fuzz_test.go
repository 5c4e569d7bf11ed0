package dnssec

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// fuzzCases are the signed answers the fuzz target mutates.
var fuzzCases = []struct {
	name  string
	qtype uint16
}{
	{"www.ok.", dns.TypeA},
	{"alias.ok.", dns.TypeA},
	{"nx.ok.", dns.TypeA},
	{"www.ok.", dns.TypeAAAA},
	{"a.wild.ok.", dns.TypeA},
	{"nx.n3.", dns.TypeA},
	{"a.wild.n3.", dns.TypeTXT},
	{"www.n3.", dns.TypeAAAA},
	{"mx.ed448.", dns.TypeMX},
	{"nx.ed448.", dns.TypeA},
}

// answerKey is the part of an answer a signature vouches for: each
// record without TTL, names in lower case, sorted; and the rcode.
func answerKey(m *dns.Msg) string {
	var rrs []string
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeRRSIG {
			continue
		}
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		rrs = append(rrs, strings.ToLower(c.String()))
	}
	slices.Sort(rrs)
	rrs = slices.Compact(rrs)
	return dns.RcodeToString[m.Rcode] + "\n" + strings.Join(rrs, "\n")
}

// FuzzValidate mutates correctly signed answers: Validate must never
// panic, and must say Secure only when the signed content (answer
// records and rcode) is what the zone holds.
func FuzzValidate(f *testing.F) {
	w := testWorld(f)
	want := map[string]string{}
	for i, c := range fuzzCases {
		m := w.chase(c.name, c.qtype)
		want[c.name+"/"+dns.TypeToString[c.qtype]] = answerKey(m)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), wire)
	}
	v, err := New(Config{Anchors: w.rootAnchor(), Clock: clockwork.NewFakeClockAt(testNow)}, w)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, wire []byte) {
		c := fuzzCases[int(which)%len(fuzzCases)]
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			return
		}
		q := dns.Question{Name: c.name, Qtype: c.qtype, Qclass: dns.ClassINET}
		r := v.Validate(context.Background(), q, m)
		if r.Verdict != Secure {
			return
		}
		if got, exp := answerKey(m), want[c.name+"/"+dns.TypeToString[c.qtype]]; got != exp {
			t.Fatalf("secure for content that was not signed:\ngot  %s\nwant %s\n%s", got, exp, m)
		}
	})
}
