package zone

import (
	"testing"

	"github.com/miekg/dns"
)

func TestSetLookup(t *testing.T) {
	t.Parallel()
	zone := func(origin string) *Zone {
		z, err := FromRecords(origin, []string{"@ TXT " + origin})
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	s, err := NewSet(zone("example."), zone("sub.example."), zone("other."))
	if err != nil {
		t.Fatal(err)
	}
	withRoot, err := NewSet(zone("."), zone("example."))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		set   *Set
		qname string
		want  string // origin, "" for none
	}{
		{name: "apex", set: s, qname: "example.", want: "example."},
		{name: "below", set: s, qname: "www.example.", want: "example."},
		{name: "longest match", set: s, qname: "a.b.sub.example.", want: "sub.example."},
		{name: "longest match apex", set: s, qname: "sub.example.", want: "sub.example."},
		{name: "case", set: s, qname: "WWW.Sub.EXAMPLE.", want: "sub.example."},
		{name: "not fully qualified", set: s, qname: "www.other", want: "other."},
		{name: "miss", set: s, qname: "example.org.", want: ""},
		{name: "suffix is not a label", set: s, qname: "notexample.", want: ""},
		{name: "escaped dot is not a label boundary", set: s, qname: `a\.sub.example.`, want: "example."},
		{name: "root", set: s, qname: ".", want: ""},
		{name: "root zone catches the rest", set: withRoot, qname: "example.org.", want: "."},
		{name: "root zone and a longer one", set: withRoot, qname: "www.example.", want: "example."},
		{name: "root query to the root zone", set: withRoot, qname: ".", want: "."},
		{name: "nil set", set: nil, qname: "example.", want: ""},
		{name: "empty name", set: s, qname: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ""
			if z := tt.set.Lookup(tt.qname); z != nil {
				got = z.Origin()
			}
			if got != tt.want {
				t.Errorf("Lookup(%q) = %q, want %q", tt.qname, got, tt.want)
			}
			m, ok := tt.set.Answer(query(dns.Fqdn(tt.qname), dns.TypeTXT, false))
			if ok != (tt.want != "") || (ok && m == nil) {
				t.Errorf("Answer: %v, %v", m, ok)
			}
		})
	}
}

func TestSetAnswer(t *testing.T) {
	t.Parallel()
	z := mustParse(t, "example.", exampleZone)
	s, err := NewSet(z)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Answer(query("www.example.", dns.TypeA, false)); !ok || len(m.Answer) != 1 {
		t.Errorf("got %v, %v", m, ok)
	}
	chaos := query("www.example.", dns.TypeTXT, false)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	if _, ok := s.Answer(chaos); ok {
		t.Error("answered class CH")
	}
	if _, ok := s.Answer(new(dns.Msg)); ok {
		t.Error("answered a message without a question")
	}
	if _, err := NewSet(z, mustParse(t, "EXAMPLE", "www A 192.0.2.1")); err == nil {
		t.Error("NewSet accepted a duplicate origin")
	}
}

func TestSetLookupDoesNotAllocate(t *testing.T) {
	z := mustParse(t, "example.", exampleZone)
	s, err := NewSet(z)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.example.org.", "a.b.c.d.e.f.", "www.example."} {
		if n := testing.AllocsPerRun(100, func() { s.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", name, n)
		}
	}
}
