package zone

import (
	"slices"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/miekg/dns"
)

// MaxChase bounds the CNAME chain Answer follows inside one zone: an answer
// holds at most this many CNAME records, and a loop ends the chain when it
// comes back to a name already followed.
const MaxChase = 8

// Answer answers q, a query with one question whose name is in the zone,
// the way an authoritative server does (RFC 1034 §4.3.2):
//
//   - an RRset at the name is the answer; a name that exists without the
//     type, an empty non-terminal included (RFC 8020), gets NODATA: NOERROR
//     and the SOA in the authority section with a TTL of min(SOA TTL, SOA
//     MINIMUM) (RFC 2308 §3), as NXDOMAIN does for a name that does not
//     exist;
//   - a CNAME is answered and its target followed while it stays in the
//     zone, up to MaxChase links; the RCODE is that of the last name (RFC
//     6604 §2). Queries for type CNAME, RRSIG or ANY are not followed;
//   - a missing name is answered from the wildcard at its closest encloser
//     (RFC 4592 §3.3.1), the records taking the query name as owner; a
//     wildcard CNAME is followed like any other;
//   - a name at or below a zone cut (NS records below the apex) gets a
//     referral (RFC 1034 §4.3.2 step 3b): AA clear, the NS records in the
//     authority section, their A and AAAA records from the zone in the
//     additional section. DS at the cut is answered from the parent side
//     (RFC 4035 §3.1.4.1);
//   - ANY is answered with one RRset at the name, the smallest (RFC 8482
//     §4.1), never all of them, so that a spoofed ANY cannot turn a small
//     query into a big answer;
//   - with DO set, the RRSIGs covering each returned RRset are added.
//     Answer synthesizes no NSEC or NSEC3 proofs: negative answers of a
//     signed zone carry only the signed SOA;
//   - MX, SRV and NS answers get the A and AAAA records of their targets
//     that are in the zone in the additional section.
//
// The reply has AA and RA set and the query's question; it carries no OPT
// (the listener adds the client's). Owner names of answers keep the case
// of the query (RFC 4343 §4). A name outside the zone is REFUSED. The
// reply shares nothing with the zone. Safe for concurrent use.
func (z *Zone) Answer(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	qq := q.Question[0]
	asked := dns.Fqdn(qq.Name)
	name := dnsname.Lower(asked)
	if !inZone(name, z.origin) {
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	do := false
	if opt := q.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	z.resolve(m, asked, name, qq.Qtype, do)
	return m
}

// resolve fills m with the answer for name (asked is the same name in the
// case the client wrote it) and qtype.
func (z *Zone) resolve(m *dns.Msg, asked, name string, qtype uint16, do bool) {
	var followed [MaxChase]string
	for step := 0; ; step++ {
		if cut, n := z.cut(name, qtype); n != nil {
			if step == 0 {
				m.Authoritative = false
			}
			z.referral(m, cut, n, do)
			return
		}
		n, ok := z.names[name]
		if !ok {
			if n = z.wildcard(name); n == nil {
				m.Rcode = dns.RcodeNameError
				z.negative(m, do)
				return
			}
		}
		if qtype != dns.TypeCNAME && qtype != dns.TypeANY && qtype != dns.TypeRRSIG {
			if c := n.set(dns.TypeCNAME); c != nil {
				m.Answer = appendSet(m.Answer, c, asked, do)
				target := c.rrs[0].(*dns.CNAME).Target
				lower := dnsname.Lower(target)
				followed[step] = name
				if step+1 == MaxChase || !inZone(lower, z.origin) || slices.Contains(followed[:step+1], lower) {
					return
				}
				asked, name = target, lower
				continue
			}
		}
		z.data(m, n, asked, qtype, do)
		return
	}
}

// data adds the records of type qtype at n, found for name asked, or the
// SOA of a NODATA answer when there are none.
func (z *Zone) data(m *dns.Msg, n *node, asked string, qtype uint16, do bool) {
	before := len(m.Answer)
	switch qtype {
	case dns.TypeANY:
		if s := smallestSet(n.sets); s != nil {
			m.Answer = appendSet(m.Answer, s, asked, do)
		}
	case dns.TypeRRSIG:
		for _, s := range n.sets {
			m.Answer = appendRRs(m.Answer, s.sigs, asked)
		}
	default:
		s := n.set(qtype)
		if s == nil {
			break
		}
		m.Answer = appendSet(m.Answer, s, asked, do)
		switch qtype {
		case dns.TypeMX, dns.TypeSRV, dns.TypeNS:
			m.Extra = z.addresses(m.Extra, s.rrs, false, do)
		}
	}
	if len(m.Answer) == before {
		z.negative(m, do)
	}
}

// smallestSet returns the RRset of sets whose records take the fewest
// bytes, the first of equals; nil when there is
// none. It is the one RRset an ANY query gets (RFC 8482 §4.1).
func smallestSet(sets []rrset) *rrset {
	var best *rrset
	bestLen := 0
	for i := range sets {
		n := 0
		for _, rr := range sets[i].rrs {
			n += dns.Len(rr)
		}
		if best == nil || n < bestLen {
			best, bestLen = &sets[i], n
		}
	}
	return best
}

// cut returns the topmost zone cut at or above name, and its node; a nil
// node when there is none. DS at the topmost cut is the parent side's
// data (RFC 4035 §3.1.4.1), so it is not a cut for qtype DS.
func (z *Zone) cut(name string, qtype uint16) (string, *node) {
	if !z.cuts {
		return "", nil
	}
	var cut string
	var found *node
	for p := name; p != z.origin && p != "."; p = parent(p) {
		if n, ok := z.names[p]; ok && n.cut {
			cut, found = p, n
		}
	}
	if found != nil && cut == name && qtype == dns.TypeDS {
		return "", nil
	}
	return cut, found
}

// referral adds the delegation at cut to m: its NS records in the
// authority section, with its DS and their signatures when do is set,
// and the glue in the additional section.
func (z *Zone) referral(m *dns.Msg, cut string, n *node, do bool) {
	ns := n.set(dns.TypeNS)
	m.Ns = appendRRs(m.Ns, ns.rrs, "")
	if ds := n.set(dns.TypeDS); ds != nil && do {
		m.Ns = appendSet(m.Ns, ds, "", do)
	}
	m.Extra = z.addresses(m.Extra, ns.rrs, true, do)
}

// wildcard returns the wildcard node that answers for name, which does not
// exist: the one at "*." + its closest encloser (RFC 4592 §3.3.1), or nil.
func (z *Zone) wildcard(name string) *node {
	for p := parent(name); ; p = parent(p) {
		if _, ok := z.names[p]; ok {
			src := "*." + p
			if p == "." {
				src = "*."
			}
			return z.names[src]
		}
		if p == z.origin || p == "." {
			return nil
		}
	}
}

// negative adds the SOA of a negative answer to m's authority section,
// its TTL min(SOA TTL, SOA MINIMUM) (RFC 2308 §3).
func (z *Zone) negative(m *dns.Msg, do bool) {
	ttl := min(z.soa.Hdr.Ttl, z.soa.Minttl)
	soa := dns.Copy(z.soa)
	soa.Header().Ttl = ttl
	m.Ns = append(m.Ns, soa)
	if !do {
		return
	}
	for _, s := range z.names[z.origin].sets {
		if s.typ != dns.TypeSOA {
			continue
		}
		for _, sig := range s.sigs {
			c := dns.Copy(sig)
			c.Header().Ttl = ttl
			m.Ns = append(m.Ns, c)
		}
	}
}

// addresses appends to extra the A and AAAA records (with their RRSIGs
// when do is set) of the NS, MX or SRV targets in rrs that are in the
// zone. Names below a zone cut are used only when glue is set.
func (z *Zone) addresses(extra []dns.RR, rrs []dns.RR, glue, do bool) []dns.RR {
	var done []string
	for _, rr := range rrs {
		var target string
		switch rr := rr.(type) {
		case *dns.NS:
			target = rr.Ns
		case *dns.MX:
			target = rr.Mx
		case *dns.SRV:
			target = rr.Target
		}
		target = dnsname.Lower(target)
		if target == "" || !inZone(target, z.origin) || slices.Contains(done, target) {
			continue
		}
		done = append(done, target)
		n, ok := z.names[target]
		if !ok {
			continue
		}
		if _, below := z.cut(target, 0); below != nil && !glue {
			continue
		}
		for _, t := range [...]uint16{dns.TypeA, dns.TypeAAAA} {
			if s := n.set(t); s != nil {
				extra = appendSet(extra, s, "", do)
			}
		}
	}
	return extra
}

// appendSet appends copies of the records of s to to, and of their
// signatures when do is set, with owner as the owner name unless it is
// empty.
func appendSet(to []dns.RR, s *rrset, owner string, do bool) []dns.RR {
	to = appendRRs(to, s.rrs, owner)
	if do {
		to = appendRRs(to, s.sigs, owner)
	}
	return to
}

func appendRRs(to []dns.RR, rrs []dns.RR, owner string) []dns.RR {
	for _, rr := range rrs {
		c := dns.Copy(rr)
		if owner != "" {
			c.Header().Name = owner
		}
		to = append(to, c)
	}
	return to
}
