package canary

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// msg builds an answer to "www.example. A" from a header line and zone
// text records: "rcode=NXDOMAIN tc ad id=7" and "answer:"/"ns:"/"extra:"
// lines switching the section.
func msg(t *testing.T, spec string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	m.Response = true
	sec := &m.Answer
	for line := range strings.SplitSeq(strings.TrimSpace(spec), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case line == "answer:":
			sec = &m.Answer
		case line == "ns:":
			sec = &m.Ns
		case line == "extra:":
			sec = &m.Extra
		case strings.HasPrefix(line, "hdr"):
			for f := range strings.FieldsSeq(line[3:]) {
				switch {
				case f == "tc":
					m.Truncated = true
				case f == "ad":
					m.AuthenticatedData = true
				case strings.HasPrefix(f, "id="):
					m.Id = 7
				case strings.HasPrefix(f, "rcode="):
					m.Rcode = dns.StringToRcode[f[6:]]
				}
			}
		default:
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			*sec = append(*sec, rr)
		}
	}
	return m
}

const soa = "example. 300 IN SOA ns.example. host.example. %s 3600 600 86400 30"

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want string
	}{
		{"same", "www.example. 60 IN A 192.0.2.1", "www.example. 60 IN A 192.0.2.1", "same"},
		{"ID, TTL, order and case ignored",
			"hdr id=1\nwww.example. 60 IN A 192.0.2.1\nwww.example. 60 IN A 192.0.2.2",
			"WWW.Example. 17 IN A 192.0.2.2\nwww.example. 3 IN A 192.0.2.1", "same"},
		{"duplicates are one member of the set",
			"www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN A 192.0.2.1", "www.example. 60 IN A 192.0.2.1", "same"},
		{"additional ignored", "www.example. 60 IN A 192.0.2.1\nextra:\nns.example. 60 IN A 192.0.2.53",
			"www.example. 60 IN A 192.0.2.1", "same"},
		{"SOA serial ignored", "hdr rcode=NXDOMAIN\nns:\n" + strings.Replace(soa, "%s", "1", 1),
			"hdr rcode=NXDOMAIN\nns:\n" + strings.Replace(soa, "%s", "2", 1), "same"},
		{"SOA other field counts", "ns:\n" + strings.Replace(soa, "%s", "1", 1),
			"ns:\n" + strings.Replace(strings.Replace(soa, "%s", "1", 1), "86400", "3600", 1), "rdata"},
		{"RRSIG bytes ignored",
			"www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN RRSIG A 13 2 60 20300101000000 20200101000000 1 example. AAAA",
			"www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN RRSIG A 13 2 60 20310101000000 20210101000000 2 example. BBBB", "same"},
		{"RRSIG of another type is another set",
			"www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN RRSIG A 13 2 60 20300101000000 20200101000000 1 example. AAAA",
			"www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN RRSIG AAAA 13 2 60 20300101000000 20200101000000 1 example. AAAA", "rrsets"},
		{"CNAME target case ignored", "www.example. 60 IN CNAME Web.Example.\nweb.example. 60 IN A 192.0.2.1",
			"www.example. 60 IN CNAME web.example.\nweb.example. 60 IN A 192.0.2.1", "same"},
		{"TXT case counts", "www.example. 60 IN TXT \"Hello\"", "www.example. 60 IN TXT \"hello\"", "rdata"},
		{"a subset of the addresses", "www.example. 60 IN A 192.0.2.1\nwww.example. 60 IN A 192.0.2.2",
			"www.example. 60 IN A 192.0.2.1", "rdata"},
		{"other RRset", "www.example. 60 IN A 192.0.2.1", "www.example. 60 IN CNAME other.example.\nother.example. 60 IN A 192.0.2.1", "rrsets"},
		{"rcode and kind", "www.example. 60 IN A 192.0.2.1", "hdr rcode=NXDOMAIN", "rcode+kind+rrsets"},
		{"NODATA against an answer", "www.example. 60 IN A 192.0.2.1", "ns:\n" + strings.Replace(soa, "%s", "1", 1), "kind+rrsets"},
		{"NXDOMAIN against NODATA", "hdr rcode=NXDOMAIN", "", "rcode+kind"},
		{"TC", "hdr tc", "", "tc"},
		{"AD", "hdr ad\nwww.example. 60 IN A 192.0.2.1", "www.example. 60 IN A 192.0.2.1", "ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := msg(t, tt.a), msg(t, tt.b)
			if got := Compare(a, b).String(); got != tt.want {
				t.Fatalf("Compare = %s, want %s", got, tt.want)
			}
			if got := Compare(b, a).String(); got != tt.want {
				t.Fatalf("Compare the other way = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCompareFailure(t *testing.T) {
	ok := msg(t, "www.example. 60 IN A 192.0.2.1")
	if d := Compare(ok, nil); d&DiffRcode == 0 {
		t.Fatalf("an answer against no answer: %s", d)
	}
	sf := msg(t, "hdr rcode=SERVFAIL")
	if d := Compare(sf, nil); d != 0 {
		t.Fatalf("SERVFAIL against no answer: %s", d)
	}
}

func TestKind(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"www.example. 60 IN A 192.0.2.1", "answer"},
		{"www.example. 60 IN CNAME x.example.", "answer"},
		{"", "nodata"},
		{"hdr rcode=NXDOMAIN", "nxdomain"},
		{"hdr rcode=REFUSED", "rcode"},
	}
	for _, tt := range tests {
		if got := Kind(msg(t, tt.spec)); got != tt.want {
			t.Errorf("Kind(%q) = %s, want %s", tt.spec, got, tt.want)
		}
	}
}

func TestDecisionCompare(t *testing.T) {
	nx := msg(t, "hdr rcode=NXDOMAIN")
	fixed := msg(t, "www.example. 60 IN A 192.0.2.9")
	tests := []struct {
		name string
		a, b Decision
		want string
	}{
		{"same", Decision{Rule: "r", Route: "g", Tags: []string{"a=1", "b=2"}}, Decision{Rule: "r", Route: "g", Tags: []string{"b=2", "a=1"}}, ""},
		{"no tags and empty tags", Decision{Tags: nil}, Decision{Tags: []string{}}, ""},
		{"route", Decision{Rule: "r", Route: "default"}, Decision{Rule: "r", Route: "v2"}, "route"},
		{"rule and route", Decision{Route: "default"}, Decision{Rule: "api", Route: "v2"}, "rule,route"},
		{"tags", Decision{Tags: []string{"a=1"}}, Decision{Tags: []string{"a=2"}}, "tags"},
		{"ecs", Decision{ECS: "strip"}, Decision{ECS: "add/24/56"}, "ecs"},
		{"allow any", Decision{}, Decision{AllowANY: true}, "allow_any"},
		{"answer against forward", Decision{}, Decision{Answer: nx}, "answer"},
		{"other answer", Decision{Answer: fixed}, Decision{Answer: nx}, "answer"},
		{"same answer", Decision{Answer: nx}, Decision{Answer: msg(t, "hdr rcode=NXDOMAIN id=9")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.a.Compare(tt.b), ","); got != tt.want {
				t.Fatalf("Compare = %q, want %q", got, tt.want)
			}
		})
	}
}
