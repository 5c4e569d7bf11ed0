package transporttest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// summary renders what the zone tests check in a reply: rcode, flags,
// answer types (runs as TYPE*n), authority types with TTLs, and EDNS. The
// answer and authority are left out of truncated replies.
func summary(r *dns.Msg) string {
	var b strings.Builder
	if r.Rcode == dns.RcodeBadVers {
		b.WriteString("BADVERS") // shares 16 with BADSIG, which RcodeToString picks
	} else {
		b.WriteString(dns.RcodeToString[r.Rcode])
	}
	if r.Authoritative {
		b.WriteString(" aa")
	}
	if r.Truncated {
		b.WriteString(" tc")
	} else {
		var an []string
		for i := 0; i < len(r.Answer); {
			t := r.Answer[i].Header().Rrtype
			j := i
			for j < len(r.Answer) && r.Answer[j].Header().Rrtype == t {
				j++
			}
			if s := dns.TypeToString[t]; j-i == 1 {
				an = append(an, s)
			} else {
				an = append(an, fmt.Sprintf("%s*%d", s, j-i))
			}
			i = j
		}
		var ns []string
		for _, rr := range r.Ns {
			ns = append(ns, fmt.Sprintf("%s/%d", dns.TypeToString[rr.Header().Rrtype], rr.Header().Ttl))
		}
		fmt.Fprintf(&b, " an=%s ns=%s", strings.Join(an, ","), strings.Join(ns, ","))
	}
	if opt := r.IsEdns0(); opt != nil {
		fmt.Fprintf(&b, " opt=%d", opt.UDPSize())
		if opt.Do() {
			b.WriteString(",do")
		}
	}
	return b.String()
}

func TestZoneAnswers(t *testing.T) {
	t.Parallel()
	s := StartFault(t, BigTXTZone()+`
deep.ent.example. 60 IN A 192.0.2.9
out.example. 60 IN CNAME target.example.org.
`)
	q := func(name string, qtype uint16) func() *dns.Msg {
		return func() *dns.Msg { return newQuery(name, qtype, 0) }
	}
	edns := func(name string, qtype, size uint16) func() *dns.Msg {
		return func() *dns.Msg { return newQuery(name, qtype, size) }
	}
	tests := []struct {
		name    string
		network string // default udp4
		query   func() *dns.Msg
		want    string
	}{
		{name: "A", query: q("a.example.", dns.TypeA), want: "NOERROR aa an=A ns="},
		{name: "AAAA over v6", network: "udp6", query: q("a.example.", dns.TypeAAAA), want: "NOERROR aa an=AAAA ns="},
		{name: "ANY", query: q("a.example.", dns.TypeANY), want: "NOERROR aa an=A,AAAA ns="},
		{name: "case insensitive", query: q("A.eXample.", dns.TypeA), want: "NOERROR aa an=A ns="},
		{name: "NODATA carries SOA with minimum TTL", query: q("a.example.", dns.TypeMX), want: "NOERROR aa an= ns=SOA/30"},
		{name: "NXDOMAIN carries SOA", query: q("nope.example.", dns.TypeA), want: "NXDOMAIN aa an= ns=SOA/30"},
		{name: "empty non-terminal is NODATA", query: q("ent.example.", dns.TypeA), want: "NOERROR aa an= ns=SOA/30"},
		{name: "below empty non-terminal", query: q("deep.ent.example.", dns.TypeA), want: "NOERROR aa an=A ns="},
		{name: "CNAME followed in zone", query: q("www.example.", dns.TypeA), want: "NOERROR aa an=CNAME,A ns="},
		{name: "CNAME asked for", query: q("www.example.", dns.TypeCNAME), want: "NOERROR aa an=CNAME ns="},
		{name: "CNAME out of zone not followed", query: q("out.example.", dns.TypeA), want: "NOERROR aa an=CNAME ns="},
		{name: "CNAME to missing type", query: q("www.example.", dns.TypeMX), want: "NOERROR aa an=CNAME ns=SOA/30"},
		{name: "outside the zone refused", query: q("example.org.", dns.TypeA), want: "REFUSED an= ns="},
		{name: "class CH refused", query: func() *dns.Msg {
			m := newQuery("a.example.", dns.TypeTXT, 0)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, want: "REFUSED an= ns="},
		{name: "NOTIFY not implemented", query: func() *dns.Msg {
			m := newQuery("example.", dns.TypeSOA, 0)
			m.Opcode = dns.OpcodeNotify
			return m
		}, want: "NOTIMP an= ns="},
		{name: "two questions", query: func() *dns.Msg {
			m := newQuery("a.example.", dns.TypeA, 0)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, want: "FORMERR an= ns="},
		{name: "EDNS echoed with DO", query: func() *dns.Msg {
			m := new(dns.Msg).SetQuestion("a.example.", dns.TypeA)
			m.SetEdns0(4096, true)
			return m
		}, want: "NOERROR aa an=A ns= opt=1232,do"},
		{name: "EDNS version 1 gets BADVERS", query: func() *dns.Msg {
			m := newQuery("a.example.", dns.TypeA, 1232)
			m.IsEdns0().SetVersion(1)
			return m
		}, want: "BADVERS an= ns= opt=1232"},
		{name: "big without EDNS truncated to 512", query: q(BigTXTName, dns.TypeTXT), want: "NOERROR aa tc"},
		{name: "big with 1232 truncated", query: edns(BigTXTName, dns.TypeTXT, 1232), want: "NOERROR aa tc opt=1232"},
		{name: "big with 4096 whole", network: "udp6", query: edns(BigTXTName, dns.TypeTXT, 4096), want: "NOERROR aa an=TXT*20 ns= opt=1232"},
		{name: "big over TCP whole", network: "tcp4", query: q(BigTXTName, dns.TypeTXT), want: "NOERROR aa an=TXT*20 ns="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			network := tt.network
			if network == "" {
				network = "udp4"
			}
			m := tt.query()
			r, err := exchange(s, network, m, answerTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(r); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if r.Question[0].Name != m.Question[0].Name {
				t.Errorf("question name %s, want %s as asked", r.Question[0].Name, m.Question[0].Name)
			}
			limit := dns.MaxMsgSize
			if strings.HasPrefix(network, "udp") {
				limit = dns.MinMsgSize
				if opt := m.IsEdns0(); opt != nil {
					limit = max(limit, int(opt.UDPSize()))
				}
			}
			r.Compress = true // measure the reply as it was sent
			if n := r.Len(); n > limit {
				t.Errorf("reply is %d bytes, over the client's %d", n, limit)
			}
		})
	}
}

func TestBigTXTExceedsBlackHoleLimit(t *testing.T) {
	t.Parallel()
	z, err := parseZone(BigTXTZone())
	if err != nil {
		t.Fatal(err)
	}
	q := newQuery(BigTXTName, dns.TypeTXT, 4096)
	out := finish(q, z.answer(q), false)
	if n := len(out); n <= BlackHoleLimit || n > 4096 {
		t.Errorf("big TXT reply is %d bytes, want over %d and at most 4096", n, BlackHoleLimit)
	}
}

func TestParseZoneErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		zone string
		want string
	}{
		{name: "syntax", zone: "a.example. IN A 192.0.2.300\n", want: "parse zone"},
		{name: "second SOA", zone: "example. IN SOA ns. host. 1 2 3 4 5\nexample. IN SOA ns. host. 2 2 3 4 5\n", want: "second soa"},
		{name: "outside the apex", zone: "example. IN SOA ns. host. 1 2 3 4 5\na.example.org. IN A 192.0.2.1\n", want: "outside the zone"},
		{name: "include refused", zone: "$INCLUDE /etc/hosts\n", want: "include"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseZone(tt.zone)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
