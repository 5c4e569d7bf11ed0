package dnssec

import (
	"context"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// denialQuery is what a proof of denial must show.
type denialQuery struct {
	name  string // canonical
	qtype uint16
	nx    bool // NXDOMAIN (else NODATA)
	// inclusive: when no proof is signed, an unsigned delegation at name
	// itself may explain it (false while building name's own keys).
	inclusive bool
	// signerOK restricts the zones whose NSEC/NSEC3 records count.
	signerOK func(string) bool
}

// denial is the outcome of a proof, plus what a DS proof tells.
type denial struct {
	outcome
	// delegation: NODATA for DS at a name whose NSEC/NSEC3 has NS and no
	// SOA: an unsigned delegation.
	delegation bool
	// optOut: an NSEC3 opt-out span covers the name (Insecure).
	optOut bool
}

// signedNSEC is a verified NSEC record with its zone.
type signedNSEC struct {
	rr   *dns.NSEC
	zone string
}

type signedNSEC3 struct {
	rr   *dns.NSEC3
	zone string
}

// proofs verifies the NSEC and NSEC3 RRsets of auth. It returns the
// secure ones and the combined outcome of the rest: Secure when every
// proof record verified, else the worst failure.
func (v *Validator) proofs(ctx context.Context, now time.Time, auth []dns.RR, signerOK func(string) bool) (nsec []signedNSEC, nsec3 []signedNSEC3, acc accumulator, unsigned bool) {
	for _, s := range groupRRsets(auth) {
		if s.rrtype != dns.TypeNSEC && s.rrtype != dns.TypeNSEC3 {
			continue
		}
		if len(s.sigs) == 0 {
			unsigned = true
			continue
		}
		o := v.verifySet(ctx, now, s, signerOK)
		acc.add(o)
		if o.verdict != Secure {
			continue
		}
		for _, rr := range s.rrs {
			switch x := rr.(type) {
			case *dns.NSEC:
				nsec = append(nsec, signedNSEC{x, o.signer})
			case *dns.NSEC3:
				nsec3 = append(nsec3, signedNSEC3{x, o.signer})
			}
		}
	}
	return nsec, nsec3, acc, unsigned
}

// proveDenial checks the authenticated denial (RFC 4035 §5.4, RFC 5155
// §8) that q.name has no data of q.qtype, or does not exist.
func (v *Validator) proveDenial(ctx context.Context, now time.Time, q denialQuery, auth []dns.RR) denial {
	what := q.name + " " + dns.TypeToString[q.qtype]
	nsec, nsec3, acc, unsigned := v.proofs(ctx, now, auth, q.signerOK)
	if acc.n > 0 && acc.worst.verdict != Secure {
		return denial{outcome: acc.worst}
	}
	if len(nsec) == 0 && len(nsec3) == 0 {
		w := v.walkInsecure(ctx, q.name, q.inclusive)
		if w.verdict != Secure {
			return denial{outcome: w}
		}
		if unsigned {
			return denial{outcome: bogus(dns.ExtendedErrorCodeRRSIGsMissing, "the NSEC/NSEC3 records denying "+what+" have no RRSIG")}
		}
		return denial{outcome: bogus(dns.ExtendedErrorCodeNSECMissing, "no NSEC/NSEC3 record denies "+what)}
	}
	var d denial
	if len(nsec3) > 0 {
		d = v.nsec3Denial(q, nsec3)
	} else {
		d = nsecDenial(q, nsec)
	}
	if d.verdict == Secure || d.verdict == Insecure {
		d.signer, d.keyTag, d.origTTL = acc.first.signer, acc.first.keyTag, acc.first.origTTL
		d.ttl = acc.ttl
	}
	return d
}

func noProof(format string, args ...any) denial {
	return denial{outcome: bogus(dns.ExtendedErrorCodeNSECMissing, fmt.Sprintf(format, args...))}
}

// nsecCovers reports whether n proves that name does not exist in its
// zone: owner < name < next in canonical order (next at or before owner
// is the wrap to the apex), and the owner is no delegation or DNAME
// above name (RFC 6840 §4.1).
func nsecCovers(n signedNSEC, name string) bool {
	owner, next := canonical(n.rr.Hdr.Name), canonical(n.rr.NextDomain)
	if !under(n.zone, name) || compareNames(owner, name) >= 0 {
		return false
	}
	if strictlyUnder(owner, name) && ((hasType(n.rr.TypeBitMap, dns.TypeNS) && !hasType(n.rr.TypeBitMap, dns.TypeSOA)) ||
		hasType(n.rr.TypeBitMap, dns.TypeDNAME)) {
		return false
	}
	if compareNames(next, owner) <= 0 {
		return true
	}
	return compareNames(name, next) < 0
}

// nodataBits checks a bitmap at the name for NODATA of qtype: the type
// and CNAME absent; for DS the parent side (no SOA unless the root),
// for other types not the parent side of a delegation (RFC 6840 §4.4).
func nodataBits(bitmap []uint16, name string, qtype uint16) bool {
	if hasType(bitmap, qtype) || hasType(bitmap, dns.TypeCNAME) {
		return false
	}
	ns, soa := hasType(bitmap, dns.TypeNS), hasType(bitmap, dns.TypeSOA)
	if qtype == dns.TypeDS {
		return !soa || name == "."
	}
	return !ns || soa
}

// nsecDenial proves NXDOMAIN or NODATA with NSEC records (RFC 4035
// §5.4): a covering NSEC for the name and for the wildcard at its
// closest encloser, or a matching NSEC without the type (or a covering
// one for an empty non-terminal, or a matching wildcard without it).
func nsecDenial(q denialQuery, nsec []signedNSEC) denial {
	what := q.name + " " + dns.TypeToString[q.qtype]
	var cover *signedNSEC
	for i, n := range nsec {
		if canonical(n.rr.Hdr.Name) == q.name {
			if q.nx {
				return noProof("NSEC proves %s exists, yet the answer is NXDOMAIN", q.name)
			}
			if !nodataBits(n.rr.TypeBitMap, q.name, q.qtype) {
				return noProof("NSEC at %s does not deny %s", q.name, what)
			}
			ns, soa := hasType(n.rr.TypeBitMap, dns.TypeNS), hasType(n.rr.TypeBitMap, dns.TypeSOA)
			return denial{outcome: outcome{verdict: Secure}, delegation: q.qtype == dns.TypeDS && ns && !soa}
		}
		if cover == nil && nsecCovers(n, q.name) {
			cover = &nsec[i]
		}
	}
	if cover == nil {
		return noProof("no NSEC covers %s", q.name)
	}
	next := canonical(cover.rr.NextDomain)
	if strictlyUnder(q.name, next) { // empty non-terminal
		if q.nx {
			return noProof("NSEC shows %s is an empty non-terminal, yet the answer is NXDOMAIN", q.name)
		}
		return denial{outcome: outcome{verdict: Secure}}
	}
	ce := suffix(q.name, max(dns.CompareDomainName(q.name, canonical(cover.rr.Hdr.Name)), dns.CompareDomainName(q.name, next)))
	if !under(cover.zone, ce) {
		ce = cover.zone
	}
	wild := wildcardOf(ce)
	for _, n := range nsec {
		if canonical(n.rr.Hdr.Name) != wild {
			continue
		}
		if q.nx {
			return noProof("NSEC proves the wildcard %s exists, yet %s is NXDOMAIN", wild, q.name)
		}
		if !nodataBits(n.rr.TypeBitMap, wild, q.qtype) {
			return noProof("NSEC at %s does not deny %s", wild, what)
		}
		return denial{outcome: outcome{verdict: Secure}}
	}
	for _, n := range nsec {
		if nsecCovers(n, wild) {
			if !q.nx {
				return noProof("NSEC denies %s and its wildcard: NXDOMAIN, not NODATA", q.name)
			}
			return denial{outcome: outcome{verdict: Secure}}
		}
	}
	return noProof("no NSEC denies the wildcard %s", wild)
}

// proveWildcard checks that name, answered by expanding the wildcard at
// encloser, does not exist itself (RFC 4035 §5.3.4, RFC 5155 §8.8).
func (v *Validator) proveWildcard(ctx context.Context, now time.Time, name, encloser, signer string, auth []dns.RR) outcome {
	nsec, nsec3, acc, _ := v.proofs(ctx, now, auth, func(s string) bool { return s == signer })
	if acc.n > 0 && acc.worst.verdict != Secure {
		return acc.worst
	}
	for _, n := range nsec {
		if nsecCovers(n, name) {
			return outcome{verdict: Secure, ttl: acc.ttl}
		}
	}
	if len(nsec3) > 0 {
		usable, o := v.usableNSEC3(nsec3)
		if o != nil {
			return o.outcome
		}
		s := &nsec3Set{recs: usable, hashes: map[string]string{}}
		if s.cover(nextCloser(name, encloser)) != nil {
			return outcome{verdict: Secure, ttl: acc.ttl}
		}
	}
	return bogus(dns.ExtendedErrorCodeNSECMissing,
		fmt.Sprintf("%s is a wildcard expansion of *.%s without proof that %s does not exist", name, encloser, name))
}
