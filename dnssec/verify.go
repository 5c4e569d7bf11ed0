package dnssec

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// outcome is the verdict on one part of an answer (an RRset, a proof, a
// zone's keys), with what explains it.
type outcome struct {
	verdict Verdict
	hasEDE  bool
	ede     uint16
	reason  string
	// signer, keyTag and origTTL describe the signature that verified
	// (or the one tried when none did); labels is its Labels field.
	signer  string
	keyTag  uint16
	origTTL uint32
	labels  uint8
	// ttl caps a Secure outcome: records' TTLs, signatures' original
	// TTLs, seconds to the first expiry.
	ttl uint32
}

func bogus(ede uint16, reason string) outcome {
	return outcome{verdict: Bogus, hasEDE: true, ede: ede, reason: reason}
}

func insecure(reason string) outcome { return outcome{verdict: Insecure, reason: reason} }

func insecureEDE(ede uint16, reason string) outcome {
	return outcome{verdict: Insecure, hasEDE: true, ede: ede, reason: reason}
}

func indeterminate(reason string) outcome {
	return outcome{verdict: Indeterminate, reason: reason}
}

// rank orders verdicts for combining: the worst part decides.
func rank(v Verdict) int {
	switch v {
	case Secure:
		return 0
	case Insecure:
		return 1
	case Indeterminate:
		return 2
	}
	return 3
}

// accumulator combines the outcomes of an answer's parts.
type accumulator struct {
	n     int
	worst outcome
	first outcome // the first part's, for Signer/KeyTag/RRSIGTTL
	ttl   uint32
}

func (a *accumulator) add(o outcome) {
	if a.n == 0 {
		a.worst, a.first, a.ttl = o, o, o.ttl
	} else {
		if rank(o.verdict) > rank(a.worst.verdict) {
			a.worst = o
		}
		a.ttl = min(a.ttl, o.ttl)
	}
	a.n++
}

func (a *accumulator) result() Result {
	if a.n == 0 {
		return Result{Verdict: Indeterminate, Reason: "empty answer"}
	}
	w := a.worst
	r := Result{Verdict: w.verdict, HasEDE: w.hasEDE, EDE: w.ede, Reason: w.reason,
		Signer: w.signer, KeyTag: w.keyTag, RRSIGTTL: w.origTTL}
	if w.verdict == Secure {
		r.Reason = ""
		r.Signer, r.KeyTag, r.RRSIGTTL = a.first.signer, a.first.keyTag, a.first.origTTL
		r.TTL = a.ttl
	}
	return r
}

// rrset is the records of one owner name and type with their RRSIGs.
type rrset struct {
	name   string // canonical
	rrtype uint16
	rrs    []dns.RR
	sigs   []*dns.RRSIG
}

// groupRRsets splits a section into RRsets, in order of first
// appearance, and attaches each RRSIG to the set it covers. RRSIGs that
// cover nothing present are dropped.
func groupRRsets(section []dns.RR) []*rrset {
	var sets []*rrset
	find := func(name string, t uint16, class uint16) *rrset {
		for _, s := range sets {
			if s.name == name && s.rrtype == t && s.rrs[0].Header().Class == class {
				return s
			}
		}
		return nil
	}
	for _, rr := range section {
		h := rr.Header()
		if h.Rrtype == dns.TypeRRSIG || h.Rrtype == dns.TypeOPT {
			continue
		}
		name := canonical(h.Name)
		if s := find(name, h.Rrtype, h.Class); s != nil {
			s.rrs = append(s.rrs, rr)
			continue
		}
		sets = append(sets, &rrset{name: name, rrtype: h.Rrtype, rrs: []dns.RR{rr}})
	}
	for _, rr := range section {
		sig, ok := rr.(*dns.RRSIG)
		if !ok {
			continue
		}
		if s := find(canonical(sig.Hdr.Name), sig.TypeCovered, sig.Hdr.Class); s != nil {
			s.sigs = append(s.sigs, sig)
		}
	}
	return sets
}

// rrsetOf returns the set of name and type in section, or nil.
func rrsetOf(section []dns.RR, name string, t uint16) *rrset {
	for _, s := range groupRRsets(section) {
		if s.name == name && s.rrtype == t {
			return s
		}
	}
	return nil
}

// algSupported reports whether RRSIGs of algorithm alg can be verified:
// RSASHA1 (5), RSASHA1-NSEC3-SHA1 (7), RSASHA256 (8), RSASHA512 (10),
// ECDSAP256SHA256 (13), ECDSAP384SHA384 (14), ED25519 (15), ED448 (16).
func algSupported(alg uint8) bool {
	switch alg {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512,
		dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519, dns.ED448:
		return true
	}
	return false
}

// digestSupported reports whether DS digests of type t can be checked.
func digestSupported(t uint8) bool {
	return t == dns.SHA1 || t == dns.SHA256 || t == dns.SHA384
}

// serial places the RFC 1982 timestamp ts at the time closest to now.
func serial(ts uint32, now int64) int64 {
	return now + int64(int32(ts-uint32(now)))
}

// failure ranks a signature failure's EDE: the most telling one wins.
func failureRank(ede uint16) int {
	switch ede {
	case dns.ExtendedErrorCodeSignatureExpired, dns.ExtendedErrorCodeSignatureNotYetValid:
		return 3
	case dns.ExtendedErrorCodeDNSBogus:
		return 2
	case dns.ExtendedErrorCodeDNSKEYMissing:
		return 1
	}
	return 0
}

// maxSigChecks bounds the public-key operations spent on one RRset:
// colliding key tags and piles of signatures must not buy an attacker
// unbounded work (CVE-2023-50387, "KeyTrap").
const maxSigChecks = 8

// verifyWithKeys checks s against keys: a signature verifies when it is
// inside its validity period (with the skew), names a key of keys by
// tag, algorithm and signer, and the key verifies it. It returns Secure
// with the TTL cap, or Bogus with the most telling failure.
func (v *Validator) verifyWithKeys(now time.Time, keys []*pubKey, s *rrset, sigs []*dns.RRSIG) outcome {
	fail := bogus(dns.ExtendedErrorCodeRRSIGsMissing,
		fmt.Sprintf("no RRSIG of %s %s has a supported algorithm", s.name, dns.TypeToString[s.rrtype]))
	set := func(o outcome, sig *dns.RRSIG) {
		if fail.ede == dns.ExtendedErrorCodeRRSIGsMissing || failureRank(o.ede) > failureRank(fail.ede) {
			o.signer, o.keyTag, o.origTTL, o.labels = canonical(sig.SignerName), sig.KeyTag, sig.OrigTtl, sig.Labels
			fail = o
		}
	}
	t := now.Unix()
	skew := int64(v.skew / time.Second)
	what := s.name + " " + dns.TypeToString[s.rrtype]
	checks := 0
	for _, sig := range sigs {
		if !algSupported(sig.Algorithm) {
			continue
		}
		if int(sig.Labels) > dns.CountLabel(s.name) {
			set(bogus(dns.ExtendedErrorCodeDNSBogus, fmt.Sprintf("RRSIG of %s has %d labels, more than its owner", what, sig.Labels)), sig)
			continue
		}
		inception, expiration := serial(sig.Inception, t), serial(sig.Expiration, t)
		if t+skew < inception {
			set(bogus(dns.ExtendedErrorCodeSignatureNotYetValid,
				fmt.Sprintf("RRSIG of %s by %s/%d not valid before %s", what, sig.SignerName, sig.KeyTag,
					time.Unix(inception, 0).UTC().Format(time.RFC3339))), sig)
			continue
		}
		if t-skew > expiration {
			set(bogus(dns.ExtendedErrorCodeSignatureExpired,
				fmt.Sprintf("RRSIG of %s by %s/%d expired at %s", what, sig.SignerName, sig.KeyTag,
					time.Unix(expiration, 0).UTC().Format(time.RFC3339))), sig)
			continue
		}
		found := false
		signer := canonical(sig.SignerName)
		for _, k := range keys {
			if k.rr.Algorithm != sig.Algorithm || k.tag != sig.KeyTag || k.name != signer {
				continue
			}
			found = true
			if checks == maxSigChecks {
				o := bogus(dns.ExtendedErrorCodeDNSBogus,
					fmt.Sprintf("%s: more than %d signature checks (colliding key tags?)", what, maxSigChecks))
				o.signer, o.keyTag, o.origTTL, o.labels = canonical(sig.SignerName), sig.KeyTag, sig.OrigTtl, sig.Labels
				return o
			}
			checks++
			if err := verifySig(k, sig, s.rrs); err != nil {
				set(bogus(dns.ExtendedErrorCodeDNSBogus,
					fmt.Sprintf("RRSIG of %s by %s/%d does not verify: %v", what, sig.SignerName, sig.KeyTag, err)), sig)
				continue
			}
			ttl := uint64(sig.OrigTtl)
			for _, rr := range s.rrs {
				ttl = min(ttl, uint64(rr.Header().Ttl))
			}
			left := max(expiration-t, 0)
			ttl = min(ttl, uint64(left), math.MaxUint32)
			return outcome{verdict: Secure, signer: canonical(sig.SignerName), keyTag: sig.KeyTag,
				origTTL: sig.OrigTtl, labels: sig.Labels, ttl: uint32(ttl)}
		}
		if !found {
			set(bogus(dns.ExtendedErrorCodeDNSKEYMissing,
				fmt.Sprintf("no DNSKEY %s/%d (algorithm %d) for the RRSIG of %s", sig.SignerName, sig.KeyTag, sig.Algorithm, what)), sig)
		}
	}
	return fail
}

// verifySet validates s through the keys of its signer: signers must
// pass signerOK (an ancestor of the owner, or of the name whose DS is
// sought). An insecure signer zone makes the set Insecure.
func (v *Validator) verifySet(ctx context.Context, now time.Time, s *rrset, signerOK func(string) bool) outcome {
	what := s.name + " " + dns.TypeToString[s.rrtype]
	if len(s.sigs) == 0 {
		return bogus(dns.ExtendedErrorCodeRRSIGsMissing, what+" has no RRSIG")
	}
	var signers []string
	bySigner := map[string][]*dns.RRSIG{}
	for _, sig := range s.sigs {
		n := canonical(sig.SignerName)
		if _, ok := bySigner[n]; !ok {
			signers = append(signers, n)
		}
		bySigner[n] = append(bySigner[n], sig)
	}
	var best outcome
	have := false
	keep := func(o outcome) {
		if !have || rank(o.verdict) < rank(best.verdict) ||
			(o.verdict == Bogus && best.verdict == Bogus && failureRank(o.ede) > failureRank(best.ede)) {
			best, have = o, true
		}
	}
	for _, signer := range signers {
		sig := bySigner[signer][0]
		if !signerOK(signer) || !under(signer, s.name) {
			o := bogus(dns.ExtendedErrorCodeDNSBogus, fmt.Sprintf("RRSIG of %s names signer %s, not a zone above it", what, signer))
			o.signer, o.keyTag, o.origTTL = signer, sig.KeyTag, sig.OrigTtl
			keep(o)
			continue
		}
		z := v.zone(ctx, signer)
		switch z.status {
		case zoneInsecure:
			o := z.outcome
			o.signer, o.keyTag, o.origTTL = signer, sig.KeyTag, sig.OrigTtl
			return o
		case zoneSecure:
			o := v.verifyWithKeys(now, z.keys, s, bySigner[signer])
			if o.verdict == Secure {
				return o
			}
			keep(o)
		case zoneNotCut:
			o := bogus(dns.ExtendedErrorCodeDNSBogus, fmt.Sprintf("signer %s of %s is not a zone: %s", signer, what, z.outcome.reason))
			o.signer, o.keyTag, o.origTTL = signer, sig.KeyTag, sig.OrigTtl
			keep(o)
		default:
			o := z.outcome
			o.reason = fmt.Sprintf("keys of %s: %s", signer, strings.TrimSpace(z.outcome.reason))
			o.signer, o.keyTag, o.origTTL = signer, sig.KeyTag, sig.OrigTtl
			keep(o)
		}
	}
	return best
}
