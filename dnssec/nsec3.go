package dnssec

import (
	"fmt"

	"github.com/miekg/dns"
)

// nsec3OptOut is the Opt-Out flag of NSEC3 (RFC 5155 §3.1.2.1).
const nsec3OptOut = 1

// usableNSEC3 keeps the NSEC3 records a validator may use (RFC 5155
// §8.1-8.2: SHA-1, no unknown flags, owner directly below the signer)
// and refuses the lot when one has more iterations than allowed (RFC 9276
// §3.2: Insecure, EDE 27).
func (v *Validator) usableNSEC3(all []signedNSEC3) ([]signedNSEC3, *denial) {
	var out []signedNSEC3
	for _, n := range all {
		if int(n.rr.Iterations) > v.maxIter {
			return nil, &denial{outcome: insecureEDE(dns.ExtendedErrorCodeUnsupportedNSEC3IterValue,
				fmt.Sprintf("NSEC3 of %s uses %d iterations, more than %d (RFC 9276)", n.zone, n.rr.Iterations, v.maxIter))}
		}
		if n.rr.Hash != dns.SHA1 || n.rr.Flags&^nsec3OptOut != 0 || parent(canonical(n.rr.Hdr.Name)) != n.zone {
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, &denial{outcome: insecure("no NSEC3 record with a supported hash and flags (RFC 5155 §8.1)")}
	}
	return out, nil
}

// nsec3Set answers match and cover questions over usable records,
// hashing each name once per salt and iteration count.
type nsec3Set struct {
	recs   []signedNSEC3
	hashes map[string]string
}

func (s *nsec3Set) hash(name string, n *dns.NSEC3) string {
	key := fmt.Sprintf("%s|%d|%s", name, n.Iterations, n.Salt)
	if h, ok := s.hashes[key]; ok {
		return h
	}
	h := dns.HashName(name, n.Hash, n.Iterations, n.Salt)
	s.hashes[key] = h
	return h
}

func (s *nsec3Set) match(name string) *dns.NSEC3 {
	for _, n := range s.recs {
		if !under(n.zone, name) {
			continue
		}
		owner, _ := dns.NextLabel(n.rr.Hdr.Name, 0)
		if eqFoldASCII(n.rr.Hdr.Name[:owner-1], s.hash(name, n.rr)) {
			return n.rr
		}
	}
	return nil
}

func (s *nsec3Set) cover(name string) *dns.NSEC3 {
	for _, n := range s.recs {
		if !under(n.zone, name) {
			continue
		}
		end, _ := dns.NextLabel(n.rr.Hdr.Name, 0)
		owner := upperASCII(n.rr.Hdr.Name[:end-1])
		next := upperASCII(n.rr.NextDomain)
		h := s.hash(name, n.rr)
		if h == "" || h == owner {
			continue
		}
		switch {
		case owner == next: // one record: covers everything else
			return n.rr
		case owner < next:
			if owner < h && h < next {
				return n.rr
			}
		default: // the last record wraps to the first
			if h > owner || h < next {
				return n.rr
			}
		}
	}
	return nil
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func eqFoldASCII(a, b string) bool { return upperASCII(a) == upperASCII(b) }

// closestEncloser finds the closest encloser proof for name (RFC 5155
// §8.3): the deepest ancestor with a matching NSEC3 (no delegation, no
// DNAME) and an NSEC3 covering the next closer name.
func (s *nsec3Set) closestEncloser(name string) (ce string, ncCover *dns.NSEC3, err error) {
	for c := parent(name); ; c = parent(c) {
		if m := s.match(c); m != nil {
			if (hasType(m.TypeBitMap, dns.TypeNS) && !hasType(m.TypeBitMap, dns.TypeSOA)) || hasType(m.TypeBitMap, dns.TypeDNAME) {
				return "", nil, fmt.Errorf("the closest encloser %s of %s is a delegation or DNAME", c, name)
			}
			nc := nextCloser(name, c)
			cv := s.cover(nc)
			if cv == nil {
				return "", nil, fmt.Errorf("no NSEC3 covers the next closer name %s of %s", nc, name)
			}
			return c, cv, nil
		}
		if c == "." {
			return "", nil, fmt.Errorf("no closest encloser of %s is proven", name)
		}
	}
}

// nsec3Denial proves NXDOMAIN or NODATA with NSEC3 records (RFC 5155
// §8.4-8.7). An opt-out span covering the next closer name makes the
// answer Insecure: an unsigned delegation may exist there (§9.2).
func (v *Validator) nsec3Denial(q denialQuery, all []signedNSEC3) denial {
	usable, d := v.usableNSEC3(all)
	if d != nil {
		return *d
	}
	what := q.name + " " + dns.TypeToString[q.qtype]
	s := &nsec3Set{recs: usable, hashes: map[string]string{}}
	if m := s.match(q.name); m != nil {
		if q.nx {
			return noProof("NSEC3 proves %s exists, yet the answer is NXDOMAIN", q.name)
		}
		if !nodataBits(m.TypeBitMap, q.name, q.qtype) {
			return noProof("NSEC3 at %s does not deny %s", q.name, what)
		}
		ns, soa := hasType(m.TypeBitMap, dns.TypeNS), hasType(m.TypeBitMap, dns.TypeSOA)
		return denial{outcome: outcome{verdict: Secure}, delegation: q.qtype == dns.TypeDS && ns && !soa}
	}
	ce, nc, err := s.closestEncloser(q.name)
	if err != nil {
		return noProof("%v", err)
	}
	optOut := nc.Flags&nsec3OptOut != 0
	if !q.nx && q.qtype == dns.TypeDS {
		if !optOut {
			return noProof("no NSEC3 matches %s and the span covering it is not opt-out", q.name)
		}
		return denial{outcome: insecure("NSEC3 opt-out span covers " + q.name), optOut: true}
	}
	wild := wildcardOf(ce)
	if m := s.match(wild); m != nil {
		if q.nx {
			return noProof("NSEC3 proves the wildcard %s exists, yet %s is NXDOMAIN", wild, q.name)
		}
		if !nodataBits(m.TypeBitMap, wild, q.qtype) {
			return noProof("NSEC3 at %s does not deny %s", wild, what)
		}
		return denial{outcome: outcome{verdict: Secure}}
	}
	if !q.nx {
		return noProof("no NSEC3 matches %s or its wildcard %s", q.name, wild)
	}
	if s.cover(wild) == nil {
		return noProof("no NSEC3 covers the wildcard %s", wild)
	}
	if optOut {
		return denial{outcome: insecure("NSEC3 opt-out span covers " + q.name + ": an unsigned delegation may exist"), optOut: true}
	}
	return denial{outcome: outcome{verdict: Secure}}
}
