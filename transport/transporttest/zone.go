package transporttest

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// advertisedUDPSize is the EDNS payload size the test servers announce
// (DNS Flag Day 2020).
const advertisedUDPSize = 1232

// maxChase bounds how many in-zone CNAMEs one answer follows.
const maxChase = 8

// zone is an immutable parsed zone. It is safe for concurrent use.
type zone struct {
	apex  string              // lower-case owner of the SOA
	soa   *dns.SOA            // from the text, or synthesized at the root
	rrs   map[string][]dns.RR // by lower-case owner name
	names map[string]bool     // every owner and empty non-terminal
}

// parseZone parses RFC 1035 master file text. Relative names need an
// $ORIGIN; records without a TTL and no $TTL get 3600. $INCLUDE is refused.
// Without an SOA the zone is authoritative for the whole tree, with a
// synthesized SOA at the root, so a few bare records are a valid zone.
func parseZone(text string) (*zone, error) {
	z := &zone{rrs: make(map[string][]dns.RR), names: make(map[string]bool)}
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			if z.soa != nil {
				return nil, fmt.Errorf("parse zone: second SOA at %s", rr.Header().Name)
			}
			z.soa = soa
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("parse zone: %w", err)
	}
	if z.soa == nil {
		z.soa = &dns.SOA{
			Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:      "ns.invalid.",
			Mbox:    "hostmaster.invalid.",
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  60,
		}
	}
	z.apex = strings.ToLower(z.soa.Hdr.Name)
	for name := range z.rrs {
		if !dns.IsSubDomain(z.apex, name) {
			return nil, fmt.Errorf("parse zone: %s is outside the zone %s", name, z.apex)
		}
		for n := name; ; {
			z.names[n] = true
			if n == z.apex {
				break
			}
			i, end := dns.NextLabel(n, 0)
			if end {
				n = "."
			} else {
				n = n[i:]
			}
		}
	}
	return z, nil
}

// answer builds the authoritative reply to q, without EDNS: finish adds it.
// Unknown names get NXDOMAIN and existing names without the type NODATA,
// both with the SOA in the authority section (RFC 2308 §3). In-zone CNAMEs
// are followed. Names outside the zone are REFUSED. Wildcards are not
// supported.
func (z *zone) answer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	switch {
	case q.Opcode != dns.OpcodeQuery:
		return m.SetRcode(q, dns.RcodeNotImplemented)
	case len(q.Question) != 1:
		return m.SetRcode(q, dns.RcodeFormatError)
	}
	m.SetReply(q)
	qs := q.Question[0]
	name := strings.ToLower(qs.Name)
	if !dns.IsSubDomain(z.apex, name) || (qs.Qclass != dns.ClassINET && qs.Qclass != dns.ClassANY) {
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	for range maxChase {
		var cname dns.RR
		found := false
		for _, rr := range z.rrs[name] {
			t := rr.Header().Rrtype
			if t == qs.Qtype || qs.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if t == dns.TypeCNAME {
				cname = rr
			}
		}
		switch {
		case found:
			return m
		case cname != nil:
			m.Answer = append(m.Answer, dns.Copy(cname))
			name = strings.ToLower(cname.(*dns.CNAME).Target)
			if !dns.IsSubDomain(z.apex, name) {
				return m
			}
		case z.names[name]:
			m.Ns = []dns.RR{z.negativeSOA()}
			return m
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.negativeSOA()}
			return m
		}
	}
	return m
}

// negativeSOA returns the SOA for a negative answer, its TTL capped by the
// SOA minimum (RFC 2308 §3).
func (z *zone) negativeSOA() dns.RR {
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	return soa
}

// finish adds EDNS to m when q carried it and packs m. Over UDP the reply is
// truncated with TC=1 to the client's EDNS payload size, or to 512 bytes
// without EDNS (RFC 6891 §6.2.5, RFC 1035 §4.2.1). An OPT with a version
// other than 0 is answered BADVERS (RFC 6891 §6.1.3). It returns nil when m
// cannot be packed.
func finish(q, m *dns.Msg, tcp bool) []byte {
	size := dns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
		if opt.Version() != 0 {
			m = new(dns.Msg).SetRcode(q, dns.RcodeBadVers)
		}
		m.SetEdns0(advertisedUDPSize, opt.Do())
	} else if m.Rcode > 0xF {
		// An extended rcode only fits in an OPT.
		m.SetEdns0(advertisedUDPSize, false)
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	m.Compress = true // Truncate turns it off for replies that fit; real servers compress
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

// BigTXTName owns the large TXT RRset in BigTXTZone.
const BigTXTName = "big.example."

// BigTXT returns zone text for n TXT records at name, each carrying one
// 100-byte string, so the RRset takes about 113*n bytes on the wire: with
// n = 20 about 2300 bytes, over the 1232 bytes that cross an IPv6 path MTU
// black hole and under a 4096-byte EDNS buffer.
func BigTXT(name string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s 60 IN TXT \"%02d%s\"\n", name, i, strings.Repeat("x", 98))
	}
	return b.String()
}

// BigTXTZone returns zone text for example. with an SOA and NS, a.example.
// (A 192.0.2.1, AAAA 2001:db8::1), www.example. (CNAME to a.example.) and
// BigTXTName with 20 records from BigTXT.
func BigTXTZone() string {
	return `$ORIGIN example.
$TTL 60
@   IN SOA ns.example. hostmaster.example. 1 3600 600 86400 30
@   IN NS  ns.example.
ns  IN A    192.0.2.53
a   IN A    192.0.2.1
a   IN AAAA 2001:db8::1
www IN CNAME a.example.
` + BigTXT(BigTXTName, 20)
}
