// Package zone answers queries for local zones authoritatively: zones
// shared by every client, zones of one tenant (picked by client id or
// source network), and the fallback zone that answers only when every
// upstream path failed.
//
// A *Zone is immutable once built and safe for concurrent use; reloading a
// zone file builds a new one and swaps it in atomically (see Zones).
package zone

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/miekg/dns"
)

// DefaultTTL is the TTL of records that state none (and follow no $TTL or
// earlier explicit TTL), and of the SOA a zone without one is given.
const DefaultTTL = 3600

// A Zone is the data of one zone: its origin and its records indexed by
// lower-cased owner name and type. It is immutable and safe for concurrent
// use. Build one with Parse, LoadFile or FromRecords.
type Zone struct {
	origin string // lower-cased FQDN
	names  map[string]*node
	soa    *dns.SOA
	cuts   bool // some name below the apex holds NS records
	count  int  // records, RRSIGs included, the SOA included
}

// node holds the RRsets of one owner name. A node without sets is an empty
// non-terminal (RFC 8020 §2), or a name holding only signatures.
type node struct {
	sets []rrset
	cut  bool // NS below the apex: a delegation point
}

// rrset is the records of one type at a name, with the RRSIGs covering
// that type.
type rrset struct {
	typ  uint16
	rrs  []dns.RR
	sigs []dns.RR
	at   int // index of its first record in the input, for errors
}

// Origin returns the zone's origin: a lower-cased fully qualified name.
func (z *Zone) Origin() string { return z.origin }

// Len returns the number of records in the zone, RRSIGs and the SOA
// (synthesized or not) included.
func (z *Zone) Len() int { return z.count }

// set returns the records of type t at n, nil when there are none.
func (n *node) set(t uint16) *rrset {
	for i := range n.sets {
		if s := &n.sets[i]; s.typ == t && len(s.rrs) > 0 {
			return s
		}
	}
	return nil
}

// entry returns the set of type t at n, created when missing.
func (n *node) entry(t uint16, at int) *rrset {
	for i := range n.sets {
		if n.sets[i].typ == t {
			return &n.sets[i]
		}
	}
	n.sets = append(n.sets, rrset{typ: t, at: at})
	return &n.sets[len(n.sets)-1]
}

// inZone reports whether name is origin or below it; both are lower-cased
// FQDNs. Labels are compared whole, so "xexample." is not in "example.".
func inZone(name, origin string) bool {
	if origin == "." {
		return true
	}
	for off := 0; ; {
		if name[off:] == origin {
			return true
		}
		var end bool
		if off, end = dns.NextLabel(name, off); end {
			return false
		}
	}
}

// parent returns name without its first label; "." for a single label.
func parent(name string) string {
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// recordError is a problem with the record at index at of the input (-1
// when no single record is to blame).
type recordError struct {
	at  int
	err error
}

// builder collects records into a Zone, checking them on the way.
type builder struct {
	origin string
	names  map[string]*node
	soa    *dns.SOA
	count  int
	errs   []recordError
	buf    []byte // to check that records encode
	// seen holds the records added, keyed by their lower-cased text
	// without TTL; dns.IsDuplicate decides within a key. It keeps
	// deduplication linear in big RRsets ($GENERATE makes them easily).
	seen map[string][]dns.RR
}

func newBuilder(origin string) *builder {
	return &builder{
		origin: origin, names: make(map[string]*node),
		buf: make([]byte, dns.MaxMsgSize), seen: make(map[string][]dns.RR),
	}
}

func (b *builder) fail(at int, format string, args ...any) {
	b.errs = append(b.errs, recordError{at, fmt.Errorf(format, args...)})
}

// add adds rr, the record at index at of the input. Identical records are
// kept once (RFC 2181 §5).
func (b *builder) add(rr dns.RR, at int) {
	h := rr.Header()
	name := dnsname.Lower(h.Name)
	switch {
	case h.Class != dns.ClassINET:
		b.fail(at, "%s: class %s not supported, only IN", name, dns.Class(h.Class))
		return
	case !inZone(name, b.origin):
		b.fail(at, "%s is outside the zone %s", name, b.origin)
		return
	}
	if _, err := dns.PackRR(rr, b.buf, 0, nil, false); err != nil {
		// The parser accepts some rdata it cannot encode ("DS 0 0 0 0").
		b.fail(at, "%s %s: cannot be encoded: %v", name, dns.Type(h.Rrtype), err)
		return
	}
	switch h.Rrtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeNone:
		b.fail(at, "%s: type %s cannot be zone data", name, dns.Type(h.Rrtype))
		return
	case dns.TypeSOA:
		if name != b.origin {
			b.fail(at, "%s: SOA record below the zone apex %s", name, b.origin)
			return
		}
		if b.soa != nil {
			b.fail(at, "%s: more than one SOA record", name)
			return
		}
		b.soa = rr.(*dns.SOA)
	case dns.TypeNS:
		if strings.HasPrefix(name, "*.") {
			b.fail(at, "%s: NS records at a wildcard name are not supported (RFC 4592 §4.2)", name)
			return
		}
	}
	n := b.names[name]
	if n == nil {
		n = new(node)
		b.names[name] = n
	}
	t := h.Rrtype
	sig, isSig := rr.(*dns.RRSIG)
	if isSig {
		t = sig.TypeCovered
	}
	c := dns.Copy(rr)
	c.Header().Ttl = 0
	key := dnsname.Lower(c.String())
	for _, have := range b.seen[key] {
		if dns.IsDuplicate(have, rr) {
			return
		}
	}
	b.seen[key] = append(b.seen[key], rr)
	s := n.entry(t, at)
	if isSig {
		s.sigs = append(s.sigs, rr)
	} else {
		s.rrs = append(s.rrs, rr)
	}
	b.count++
}

// zone checks what was added as a whole and returns the zone: a CNAME
// may not share its name with other data (RFC 1034 §3.6.2, RRSIG and NSEC
// excepted), and a zone without an SOA gets
//
//	<origin> 3600 IN SOA localhost. hostmaster.<origin> 1 3600 600 86400 60
//
// so that negative answers always carry one (RFC 2308 §3). The TTLs of an
// RRset are set to the lowest among them (RFC 2181 §5.2).
func (b *builder) zone() (*Zone, []recordError) {
	if b.soa == nil {
		b.add(&dns.SOA{
			Hdr: dns.RR_Header{Name: b.origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: DefaultTTL},
			Ns:  "localhost.", Mbox: "hostmaster." + strings.TrimPrefix(b.origin, "."),
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		}, -1)
	}
	z := &Zone{origin: b.origin, names: b.names, soa: b.soa, count: b.count}
	for name, n := range b.names {
		b.checkCNAME(name, n)
		if name != b.origin && n.set(dns.TypeNS) != nil {
			n.cut, z.cuts = true, true
		}
		for i := range n.sets {
			sameTTL(n.sets[i].rrs)
			sameTTL(n.sets[i].sigs)
		}
	}
	// Every name between an owner and the apex exists (RFC 8020 §2).
	var ents []string
	for name := range b.names {
		for p := name; p != b.origin && p != "."; {
			p = parent(p)
			if _, ok := b.names[p]; !ok {
				ents = append(ents, p)
			}
		}
	}
	for _, p := range ents {
		b.names[p] = new(node)
	}
	sort.Slice(b.errs, func(i, j int) bool {
		if b.errs[i].at != b.errs[j].at {
			return b.errs[i].at < b.errs[j].at
		}
		return b.errs[i].err.Error() < b.errs[j].err.Error()
	})
	return z, b.errs
}

func (b *builder) checkCNAME(name string, n *node) {
	c := n.set(dns.TypeCNAME)
	if c == nil {
		return
	}
	if len(c.rrs) > 1 {
		b.fail(c.at, "%s: more than one CNAME record (RFC 2181 §10.1)", name)
	}
	if name == b.origin {
		b.fail(c.at, "%s: CNAME at the zone apex, which holds the SOA (RFC 1034 §3.6.2)", name)
		return
	}
	for _, s := range n.sets {
		if len(s.rrs) == 0 || s.typ == dns.TypeCNAME || s.typ == dns.TypeNSEC || s.typ == dns.TypeRRSIG {
			continue
		}
		b.fail(max(c.at, s.at), "%s: CNAME and %s records at the same name (RFC 1034 §3.6.2)", name, dns.Type(s.typ))
	}
}

// sameTTL sets the TTL of every record of rrs to the lowest among them.
func sameTTL(rrs []dns.RR) {
	if len(rrs) < 2 {
		return
	}
	low := rrs[0].Header().Ttl
	for _, rr := range rrs[1:] {
		low = min(low, rr.Header().Ttl)
	}
	for _, rr := range rrs {
		rr.Header().Ttl = low
	}
}
