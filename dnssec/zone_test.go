package dnssec

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testZone describes one zone of a test world: its records as zone text
// and how it is signed.
type testZone struct {
	name    string
	alg     uint8 // 0: unsigned
	records string
	nsec3   bool
	iter    uint16
	optOut  bool
	// inception and expiration of signatures, relative to the world's
	// time; zero means -1h and +24h.
	inception, expiration time.Duration
	// dsAlg and dsDigest override the DS the parent publishes (an
	// unsupported algorithm, or a digest that matches nothing).
	dsAlg    uint8
	dsDigest string
	dsType   uint8
	noDNSKEY bool // serve an empty DNSKEY set
	noDS     bool // publish no DS at the parent (an unsigned delegation)
}

// signedZone is a built zone: keys, records by owner, signatures.
type signedZone struct {
	testZone
	key  *dns.DNSKEY
	priv crypto.Signer
	// sets[owner][type] is the RRset; sigs likewise.
	sets  map[string]map[uint16][]dns.RR
	sigs  map[string]map[uint16][]dns.RR
	names []string // owners with data, sorted canonically
	ents  []string // empty non-terminals
	// nsec3 chain: hash → record
	n3    []*dns.NSEC3
	n3sig map[string][]dns.RR
}

// world is a set of zones served by an in-memory Fetcher; it counts the
// fetches. Safe for concurrent use.
type world struct {
	t     testing.TB
	now   time.Time
	zones map[string]*signedZone
	// gate, when set, is waited on by every Fetch.
	gate    chan struct{}
	fetches atomic.Int64
	mu      sync.Mutex
	byQuery map[string]int
}

const testTTL = 3600

func newWorld(t testing.TB, now time.Time, zones ...testZone) *world {
	t.Helper()
	w := &world{t: t, now: now, zones: map[string]*signedZone{}, byQuery: map[string]int{}}
	for _, z := range zones {
		z.name = canonical(z.name)
		sz := &signedZone{testZone: z, sets: map[string]map[uint16][]dns.RR{}, sigs: map[string]map[uint16][]dns.RR{}}
		if z.alg != 0 {
			sz.key = &dns.DNSKEY{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: testTTL},
				Flags: 257, Protocol: 3, Algorithm: z.alg}
			if z.alg == dns.ED448 {
				sz.priv = newED448Key(t, sz.key)
				w.zones[z.name] = sz
				continue
			}
			bits := map[uint8]int{dns.RSASHA256: 1024, dns.RSASHA512: 1024, dns.RSASHA1: 1024, dns.RSASHA1NSEC3SHA1: 1024,
				dns.ECDSAP256SHA256: 256, dns.ECDSAP384SHA384: 384, dns.ED25519: 256}[z.alg]
			p, err := sz.key.Generate(bits)
			if err != nil {
				t.Fatalf("generate key for %s: %v", z.name, err)
			}
			sz.priv = p.(crypto.Signer)
		}
		w.zones[z.name] = sz
	}
	// Parents publish NS (and DS) for their children.
	for _, z := range w.zones {
		if z.name == "." {
			continue
		}
		p := w.zoneOf(parent(z.name))
		if p == nil {
			continue
		}
		p.records += fmt.Sprintf("\n%s 3600 IN NS ns.%s", z.name, z.name)
		if z.key != nil && !z.noDS {
			ds := z.key.ToDS(dns.SHA256)
			if z.dsAlg != 0 {
				ds.Algorithm = z.dsAlg
			}
			if z.dsType != 0 {
				ds.DigestType = z.dsType
			}
			if z.dsDigest != "" {
				ds.Digest = z.dsDigest
			}
			p.records += "\n" + ds.String()
		}
	}
	for _, z := range w.zones {
		w.build(z)
	}
	return w
}

// zoneOf returns the deepest zone holding name.
func (w *world) zoneOf(name string) *signedZone {
	for n := name; ; n = parent(n) {
		if z := w.zones[n]; z != nil {
			return z
		}
		if n == "." {
			return nil
		}
	}
}

func (w *world) build(z *signedZone) {
	t := w.t
	add := func(rr dns.RR) {
		h := rr.Header()
		h.Name = canonical(h.Name)
		if z.sets[h.Name] == nil {
			z.sets[h.Name] = map[uint16][]dns.RR{}
		}
		z.sets[h.Name][h.Rrtype] = append(z.sets[h.Name][h.Rrtype], rr)
	}
	add(&dns.SOA{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: testTTL},
		Ns: "ns." + strings.TrimPrefix(z.name, "."), Mbox: "h." + strings.TrimPrefix(z.name, "."), Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300})
	if z.key != nil && !z.noDNSKEY {
		add(z.key)
	}
	for _, line := range strings.Split(z.records, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("zone %s: %q: %v", z.name, line, err)
		}
		add(rr)
	}
	// Owners below a cut (other than the cut itself) are glue: none here.
	for n := range z.sets {
		z.names = append(z.names, n)
	}
	sort.Slice(z.names, func(i, j int) bool { return compareNames(z.names[i], z.names[j]) < 0 })
	seen := map[string]bool{}
	for _, n := range z.names {
		seen[n] = true
	}
	for _, n := range z.names {
		for p := parent(n); p != z.name && strictlyUnder(z.name, p); p = parent(p) {
			if !seen[p] {
				seen[p] = true
				z.ents = append(z.ents, p)
			}
		}
	}
	if z.key == nil {
		return
	}
	if z.nsec3 {
		w.buildNSEC3(z)
	} else {
		for i, n := range z.names {
			next := z.names[(i+1)%len(z.names)]
			types := []uint16{dns.TypeNSEC}
			if !w.isUnsignedCut(z, n) {
				types = append(types, dns.TypeRRSIG)
			}
			for ty := range z.sets[n] {
				types = append(types, ty)
			}
			slices.Sort(types)
			add(&dns.NSEC{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 300},
				NextDomain: next, TypeBitMap: types})
		}
	}
	for n, byType := range z.sets {
		for ty, rrs := range byType {
			if ty == dns.TypeNS && n != z.name {
				continue // delegation NS are not signed
			}
			if z.sigs[n] == nil {
				z.sigs[n] = map[uint16][]dns.RR{}
			}
			z.sigs[n][ty] = []dns.RR{w.sign(z, rrs)}
		}
	}
	z.n3sig = map[string][]dns.RR{}
	for _, r := range z.n3 {
		z.n3sig[r.Hdr.Name] = []dns.RR{w.sign(z, []dns.RR{r})}
	}
}

func (w *world) isUnsignedCut(z *signedZone, n string) bool {
	return n != z.name && z.sets[n][dns.TypeNS] != nil && z.sets[n][dns.TypeDS] == nil
}

func (w *world) sign(z *signedZone, rrs []dns.RR) *dns.RRSIG {
	inc, exp := z.inception, z.expiration
	if inc == 0 && exp == 0 {
		inc, exp = -time.Hour, 24*time.Hour
	}
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Ttl: rrs[0].Header().Ttl}, Algorithm: z.alg, KeyTag: z.key.KeyTag(),
		SignerName: z.name, Inception: uint32(w.now.Add(inc).Unix()), Expiration: uint32(w.now.Add(exp).Unix())}
	if z.alg == dns.ED448 {
		signED448(w.t, z.priv, sig, rrs)
		return sig
	}
	if err := sig.Sign(z.priv, rrs); err != nil {
		w.t.Fatalf("sign %s: %v", rrs[0].Header().Name, err)
	}
	return sig
}

const testSalt = "AABB"

func (w *world) buildNSEC3(z *signedZone) {
	type entry struct {
		hash  string
		types []uint16
	}
	var es []entry
	for _, n := range append(slices.Clone(z.names), z.ents...) {
		var types []uint16
		if z.optOut && w.isUnsignedCut(z, n) {
			continue
		}
		for ty := range z.sets[n] {
			types = append(types, ty)
		}
		if len(types) > 0 && !w.isUnsignedCut(z, n) {
			types = append(types, dns.TypeRRSIG)
		}
		if n == z.name {
			types = append(types, dns.TypeNSEC3PARAM)
		}
		slices.Sort(types)
		es = append(es, entry{dns.HashName(n, dns.SHA1, z.iter, testSalt), types})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].hash < es[j].hash })
	var flags uint8
	if z.optOut {
		flags = 1
	}
	for i, e := range es {
		next := es[(i+1)%len(es)].hash
		z.n3 = append(z.n3, &dns.NSEC3{Hdr: dns.RR_Header{Name: strings.ToLower(e.hash) + "." + z.name, Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 300},
			Hash: dns.SHA1, Flags: flags, Iterations: z.iter, SaltLength: uint8(len(testSalt) / 2), Salt: testSalt,
			HashLength: 20, NextDomain: next, TypeBitMap: e.types})
	}
}

// Fetch answers DS at a cut from the parent, everything else from the
// deepest zone.
func (w *world) Fetch(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if w.gate != nil {
		select {
		case <-w.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	w.fetches.Add(1)
	w.mu.Lock()
	w.byQuery[canonical(name)+"/"+dns.TypeToString[qtype]]++
	w.mu.Unlock()
	return w.query(name, qtype), nil
}

// query answers like an authoritative server with DO set; the message
// is the caller's to change.
func (w *world) query(name string, qtype uint16) *dns.Msg { return w.answer(name, qtype).Copy() }

func (w *world) count(q string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byQuery[q]
}

func (w *world) answer(name string, qtype uint16) *dns.Msg {
	name = canonical(name)
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Response = true
	z := w.zoneOf(name)
	if z != nil && z.name == name && qtype == dns.TypeDS && name != "." {
		z = w.zoneOf(parent(name))
	}
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return m
	}
	addSet := func(sec *[]dns.RR, owner string, ty uint16) bool {
		rrs := z.sets[owner][ty]
		if rrs == nil {
			return false
		}
		*sec = append(*sec, rrs...)
		*sec = append(*sec, z.sigs[owner][ty]...)
		return true
	}
	soa := func() { addSet(&m.Ns, z.name, dns.TypeSOA) }
	for a := parent(name); strictlyUnder(z.name, a); a = parent(a) {
		if addSet(&m.Answer, a, dns.TypeDNAME) { // RFC 6672 synthesis
			target := dnameTarget(name, a, z.sets[a][dns.TypeDNAME][0].(*dns.DNAME).Target)
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME,
				Class: dns.ClassINET, Ttl: testTTL}, Target: target})
			return m
		}
	}
	if addSet(&m.Answer, name, qtype) {
		return m
	}
	if _, ok := z.sets[name]; ok {
		if addSet(&m.Answer, name, dns.TypeCNAME) {
			return m
		}
		soa()
		if z.nsec3 && z.optOut && w.isUnsignedCut(z, name) {
			ce := parent(name)
			for ; ce != z.name && z.sets[ce] == nil && !slices.Contains(z.ents, ce); ce = parent(ce) {
			}
			w.proveName(z, m, ce, "match")
			w.proveName(z, m, nextCloser(name, ce), "cover")
			return m
		}
		w.proveName(z, m, name, "match")
		return m
	}
	if slices.Contains(z.ents, name) {
		soa()
		if z.nsec3 {
			w.proveName(z, m, name, "match")
		} else {
			w.proveName(z, m, name, "cover")
		}
		return m
	}
	// closest encloser
	ce := parent(name)
	for ; ce != z.name; ce = parent(ce) {
		if _, ok := z.sets[ce]; ok || slices.Contains(z.ents, ce) {
			break
		}
	}
	wild := wildcardOf(ce)
	if rrs := z.sets[wild][qtype]; rrs != nil {
		for _, rr := range rrs {
			c := dns.Copy(rr)
			c.Header().Name = name
			m.Answer = append(m.Answer, c)
		}
		for _, s := range z.sigs[wild][qtype] {
			c := dns.Copy(s)
			c.Header().Name = name
			m.Answer = append(m.Answer, c)
		}
		w.proveName(z, m, name, "cover")
		if z.nsec3 {
			w.proveName(z, m, nextCloser(name, ce), "cover")
		}
		return m
	}
	soa()
	if _, ok := z.sets[wild]; ok {
		w.proveName(z, m, name, "cover")
		if z.nsec3 {
			w.proveName(z, m, ce, "match")
			w.proveName(z, m, nextCloser(name, ce), "cover")
		}
		w.proveName(z, m, wild, "match")
		return m
	}
	m.Rcode = dns.RcodeNameError
	if z.nsec3 {
		w.proveName(z, m, ce, "match")
		w.proveName(z, m, nextCloser(name, ce), "cover")
		w.proveName(z, m, wild, "cover")
	} else {
		w.proveName(z, m, name, "cover")
		w.proveName(z, m, wild, "cover")
	}
	return m
}

// proveName adds the NSEC or NSEC3 record that matches or covers name.
func (w *world) proveName(z *signedZone, m *dns.Msg, name, how string) {
	if z.key == nil {
		return
	}
	addOnce := func(rrs ...dns.RR) {
		for _, rr := range rrs {
			for _, have := range m.Ns {
				if dns.IsDuplicate(have, rr) {
					return
				}
			}
		}
		m.Ns = append(m.Ns, rrs...)
	}
	if z.nsec3 {
		h := dns.HashName(name, dns.SHA1, z.iter, testSalt)
		for i, r := range z.n3 {
			owner := strings.ToUpper(strings.SplitN(r.Hdr.Name, ".", 2)[0])
			next := z.n3[(i+1)%len(z.n3)]
			nextH := strings.ToUpper(strings.SplitN(next.Hdr.Name, ".", 2)[0])
			hit := owner == h
			if how == "cover" {
				hit = (owner < h && (h < nextH || nextH <= owner)) || (nextH <= owner && h < nextH)
			}
			if hit {
				addOnce(append([]dns.RR{r}, z.n3sig[r.Hdr.Name]...)...)
				return
			}
		}
		return
	}
	for _, n := range z.names {
		nsec := z.sets[n][dns.TypeNSEC][0].(*dns.NSEC)
		hit := n == name
		if how == "cover" {
			hit = nsecCovers(signedNSEC{nsec, z.name}, name) || (compareNames(n, name) < 0 && strictlyUnder(name, nsec.NextDomain))
		}
		if hit {
			addOnce(append([]dns.RR{nsec}, z.sigs[n][dns.TypeNSEC]...)...)
			return
		}
	}
}
