package dnssec

import (
	"container/list"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// zoneStatus is what the chain of trust says about one name as a zone.
type zoneStatus uint8

const (
	// zoneIndeterminate: the chain could not be followed (a fetch
	// failed, no anchor above); never cached.
	zoneIndeterminate zoneStatus = iota
	// zoneSecure: the name is a zone whose DNSKEY set is trusted.
	zoneSecure
	// zoneInsecure: the name is in an unsigned zone (a signed parent
	// proved the DS absent, or only unsupported algorithms are used).
	zoneInsecure
	// zoneNotCut: a signed proof says the name is no zone cut.
	zoneNotCut
	// zoneBogus: the chain is broken (outcome says how).
	zoneBogus
)

// bogusKeyTTL bounds how long a broken chain is remembered (RFC 9520 §3
// asks failures to be cached, briefly).
const bogusKeyTTL = 60 * time.Second

// zoneKeys is the cached state of one name.
type zoneKeys struct {
	status  zoneStatus
	keys    []*pubKey // zoneSecure: the whole verified DNSKEY set, parsed
	outcome outcome   // verdict, EDE and reason for the other states
	expires time.Time
}

// zone returns the trust state of name (canonical), from the cache or
// built once for all concurrent callers.
func (v *Validator) zone(ctx context.Context, name string) *zoneKeys {
	if n := v.negativeAnchor(name); n != "" {
		return &zoneKeys{status: zoneInsecure, outcome: insecure("negative trust anchor " + n)}
	}
	if z := v.cache.get(name, v.clock.Now()); z != nil {
		return z
	}
	r, _, _ := v.flight.Do(name, func() (any, error) {
		if z := v.cache.get(name, v.clock.Now()); z != nil {
			return z, nil
		}
		z := v.buildZone(ctx, name)
		if z.status != zoneIndeterminate {
			v.cache.put(name, z)
		}
		return z, nil
	})
	return r.(*zoneKeys)
}

// buildZone follows the chain of trust to name: the anchor, or the DS
// set signed by the parent and the DNSKEY set it vouches for, or the
// parent's proof that there is no DS.
func (v *Validator) buildZone(ctx context.Context, name string) *zoneKeys {
	now := v.clock.Now()
	if a := v.anchors[name]; a != nil {
		return v.keysFrom(ctx, now, name, a.ds, a.keys, now.Add(time.Duration(maxTTL)*time.Second))
	}
	if v.closestAnchor(name) == "" {
		return &zoneKeys{outcome: indeterminate("no trust anchor above " + name)}
	}
	msg, err := v.fetch.Fetch(ctx, name, dns.TypeDS)
	if err != nil {
		return &zoneKeys{outcome: indeterminate(fmt.Sprintf("fetch %s DS: %v", name, err))}
	}
	if msg == nil {
		return &zoneKeys{outcome: indeterminate(fmt.Sprintf("fetch %s DS: no response", name))}
	}
	if s := rrsetOf(msg.Answer, name, dns.TypeDS); s != nil {
		if len(s.sigs) == 0 {
			return v.unsignedAbove(ctx, now, name, bogus(dns.ExtendedErrorCodeRRSIGsMissing, "DS set of "+name+" has no RRSIG"))
		}
		o := v.verifySet(ctx, now, s, func(signer string) bool { return strictlyUnder(signer, name) })
		if o.verdict != Secure {
			return fromOutcome(now, o)
		}
		ds := make([]*dns.DS, 0, len(s.rrs))
		for _, rr := range s.rrs {
			ds = append(ds, rr.(*dns.DS))
		}
		return v.keysFrom(ctx, now, name, ds, nil, now.Add(time.Duration(o.ttl)*time.Second))
	}
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return &zoneKeys{outcome: indeterminate(fmt.Sprintf("fetch %s DS: rcode %s", name, dns.RcodeToString[msg.Rcode]))}
	}
	if o, ok := v.aliasAt(ctx, now, name, msg.Answer); ok {
		if o.verdict != Secure {
			return fromOutcome(now, o)
		}
		return &zoneKeys{status: zoneNotCut, expires: now.Add(time.Duration(o.ttl) * time.Second),
			outcome: insecure(name + " is an alias, no zone cut")}
	}
	d := v.proveDenial(ctx, now, denialQuery{name: name, qtype: dns.TypeDS, nx: msg.Rcode == dns.RcodeNameError,
		signerOK: func(s string) bool { return strictlyUnder(s, name) }}, msg.Ns)
	exp := now.Add(time.Duration(d.ttl) * time.Second)
	switch {
	case d.verdict == Secure && d.delegation:
		return &zoneKeys{status: zoneInsecure, expires: exp,
			outcome: insecure("no DS for " + name + ": the delegation is unsigned")}
	case d.verdict == Secure:
		return &zoneKeys{status: zoneNotCut, expires: exp, outcome: insecure(name + " is no zone cut")}
	case d.verdict == Insecure && d.optOut:
		return &zoneKeys{status: zoneInsecure, expires: exp,
			outcome: insecure("no DS for " + name + ": covered by an NSEC3 opt-out span")}
	}
	return fromOutcome(now, d.outcome)
}

// aliasAt looks in the answer to a DS query for a CNAME at name or a
// DNAME above it: either proves name is no zone cut (RFC 2181 §10.1,
// RFC 6672 §2.4) once it verifies, signed from above name.
func (v *Validator) aliasAt(ctx context.Context, now time.Time, name string, answer []dns.RR) (outcome, bool) {
	for _, s := range groupRRsets(answer) {
		if (s.rrtype == dns.TypeCNAME && s.name == name) || (s.rrtype == dns.TypeDNAME && strictlyUnder(s.name, name)) {
			return v.verifySet(ctx, now, s, func(signer string) bool { return strictlyUnder(signer, name) }), true
		}
	}
	return outcome{}, false
}

// maxTTL caps anchors' own lifetime in the cache (their DNSKEY sets
// still expire on their TTL).
const maxTTL = 86400

// fromOutcome turns a non-Secure outcome into zone state.
func fromOutcome(now time.Time, o outcome) *zoneKeys {
	switch o.verdict {
	case Insecure:
		return &zoneKeys{status: zoneInsecure, outcome: o, expires: now.Add(time.Duration(o.ttl) * time.Second)}
	case Bogus:
		return &zoneKeys{status: zoneBogus, outcome: o, expires: now.Add(bogusKeyTTL)}
	}
	return &zoneKeys{status: zoneIndeterminate, outcome: o}
}

// unsignedAbove decides on an unsigned answer about name (a DS set or
// its denial): Insecure when a zone cut above name is proven unsigned,
// else fail.
func (v *Validator) unsignedAbove(ctx context.Context, now time.Time, name string, fail outcome) *zoneKeys {
	w := v.walkInsecure(ctx, name, false)
	if w.verdict != Secure {
		return fromOutcome(now, w)
	}
	return fromOutcome(now, fail)
}

// walkInsecure walks down from the closest anchor toward name (name
// included when inclusive) and returns Insecure at the first zone cut
// proven unsigned, Bogus or Indeterminate when the chain breaks, Secure
// when name is inside a signed zone (so its data must be signed).
func (v *Validator) walkInsecure(ctx context.Context, name string, inclusive bool) outcome {
	a := v.closestAnchor(name)
	if a == "" {
		return indeterminate("no trust anchor covers " + name)
	}
	if n := v.negativeAnchor(name); n != "" {
		return insecure("negative trust anchor " + n)
	}
	last := dns.CountLabel(name)
	if !inclusive {
		last--
	}
	for n := dns.CountLabel(a) + 1; n <= last; n++ {
		cut := suffix(name, n)
		z := v.zone(ctx, cut)
		switch z.status {
		case zoneSecure, zoneNotCut:
			continue
		case zoneInsecure:
			return z.outcome
		}
		o := z.outcome
		o.reason = fmt.Sprintf("keys of %s: %s", cut, strings.TrimSpace(o.reason))
		return o
	}
	return outcome{verdict: Secure}
}

// keysFrom fetches the DNSKEY set of zone and trusts it when it is
// signed by a key that one of ds (or trusted) vouches for (RFC 4035
// §5.2). A DS set whose algorithms or digests are all unsupported makes
// the zone Insecure (RFC 6840 §5.2, EDE 1 or 2). expires caps how long
// the result is kept.
func (v *Validator) keysFrom(ctx context.Context, now time.Time, zone string, ds []*dns.DS, trusted []*dns.DNSKEY, expires time.Time) *zoneKeys {
	var usable []*dns.DS
	algOK, strong := false, false
	for _, d := range ds {
		if !algSupported(d.Algorithm) {
			continue
		}
		algOK = true
		if digestSupported(d.DigestType) {
			usable = append(usable, d)
			strong = strong || d.DigestType != dns.SHA1
		}
	}
	if strong { // RFC 4509 §3: SHA-1 DS are ignored next to SHA-256 ones
		usable = slices.DeleteFunc(usable, func(d *dns.DS) bool { return d.DigestType == dns.SHA1 })
	}
	var keys []*pubKey
	for _, k := range trusted {
		if algSupported(k.Algorithm) {
			keys = append(keys, newPubKey(k))
		}
	}
	if len(usable) == 0 && len(keys) == 0 {
		o := insecureEDE(dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm, "no DS or anchor of "+zone+" has a supported algorithm")
		if algOK {
			o = insecureEDE(dns.ExtendedErrorCodeUnsupportedDSDigestType, "no DS of "+zone+" has a supported digest type")
		}
		return &zoneKeys{status: zoneInsecure, outcome: o, expires: expires}
	}
	msg, err := v.fetch.Fetch(ctx, zone, dns.TypeDNSKEY)
	if err != nil {
		return &zoneKeys{outcome: indeterminate(fmt.Sprintf("fetch %s DNSKEY: %v", zone, err))}
	}
	if msg == nil {
		return &zoneKeys{outcome: indeterminate(fmt.Sprintf("fetch %s DNSKEY: no response", zone))}
	}
	s := rrsetOf(msg.Answer, zone, dns.TypeDNSKEY)
	if s == nil {
		return fromOutcome(now, bogus(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY set for "+zone))
	}
	// Every key is parsed once, here: verifying with the cached set
	// decodes nothing.
	all := make([]*pubKey, 0, len(s.rrs))
	for _, rr := range s.rrs {
		all = append(all, newPubKey(rr.(*dns.DNSKEY)))
	}
	for _, k := range all {
		for _, d := range usable {
			if k.rr.Algorithm == d.Algorithm && k.tag == d.KeyTag && k.rr.Flags&dns.ZONE != 0 {
				if c := k.rr.ToDS(d.DigestType); c != nil && strings.EqualFold(c.Digest, d.Digest) {
					keys = append(keys, k)
					break
				}
			}
		}
	}
	if len(keys) == 0 {
		// RFC 8914 §4.10: a DS at the parent, and no DNSKEY of the child
		// that matches it.
		return fromOutcome(now, bogus(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY of "+zone+" matches its DS"))
	}
	if len(s.sigs) == 0 {
		return fromOutcome(now, bogus(dns.ExtendedErrorCodeRRSIGsMissing, "DNSKEY set of "+zone+" has no RRSIG"))
	}
	o := v.verifyWithKeys(now, keys, s, s.sigs)
	if o.verdict != Secure {
		if o.ede == dns.ExtendedErrorCodeDNSKEYMissing {
			o.ede = dns.ExtendedErrorCodeDNSBogus
			o.reason = "DNSKEY set of " + zone + " is not signed by a key its DS vouches for"
		}
		return fromOutcome(now, o)
	}
	exp := now.Add(time.Duration(o.ttl) * time.Second)
	if expires.Before(exp) {
		exp = expires
	}
	return &zoneKeys{status: zoneSecure, keys: all, outcome: o, expires: exp}
}

// keyCache keeps zone states, at most size of them, dropping the least
// recently used; entries expire on the validator's clock. Safe for
// concurrent use.
type keyCache struct {
	mu    sync.Mutex
	size  int
	order *list.List // front: most recent; values *cacheEntry
	byKey map[string]*list.Element
}

type cacheEntry struct {
	name string
	z    *zoneKeys
}

func newKeyCache(size int) *keyCache {
	return &keyCache{size: size, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *keyCache) get(name string, now time.Time) *zoneKeys {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[name]
	if e == nil {
		return nil
	}
	ent := e.Value.(*cacheEntry)
	if !now.Before(ent.z.expires) {
		c.order.Remove(e)
		delete(c.byKey, name)
		return nil
	}
	c.order.MoveToFront(e)
	return ent.z
}

func (c *keyCache) put(name string, z *zoneKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.byKey[name]; e != nil {
		e.Value.(*cacheEntry).z = z
		c.order.MoveToFront(e)
		return
	}
	c.byKey[name] = c.order.PushFront(&cacheEntry{name: name, z: z})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).name)
	}
}

// len returns the number of entries (expired ones included).
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
