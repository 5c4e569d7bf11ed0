// Package dnssec validates DNS answers (RFC 4033–4035, 5155, 6840, 9276):
// it builds the chain of trust from the configured trust anchors down to
// the answer's signer, verifies RRSIGs and proofs of denial, and says
// what it found as a Result. It does no I/O of its own: the DNSKEY and DS
// sets it needs come through a Fetcher (in dnsedge, the forward group,
// asked with DO and CD set), and it keeps them, with their verdict, for
// every later query (single-flight).
package dnssec

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Verdict is the outcome of validating an answer (RFC 4035 §4.3).
type Verdict uint8

// Verdicts.
const (
	// Indeterminate: no trust anchor covers the name, or the chain could
	// not be followed (a fetch failed).
	Indeterminate Verdict = iota
	// Secure: every RRset of the answer (or its denial) verifies up to a
	// trust anchor.
	Secure
	// Insecure: a signed parent proves the zone unsigned (no DS), or a
	// negative trust anchor covers the name, or the zone uses only
	// algorithms this validator does not know, or NSEC3 iterations are
	// too high (RFC 9276).
	Insecure
	// Bogus: the answer should be signed and is not, or does not verify.
	Bogus
)

func (v Verdict) String() string {
	switch v {
	case Secure:
		return "secure"
	case Insecure:
		return "insecure"
	case Bogus:
		return "bogus"
	}
	return "indeterminate"
}

// Result is what validating one answer found.
type Result struct {
	Verdict Verdict
	// EDE is the Extended DNS Error code (RFC 8914) that explains a
	// Bogus or Insecure verdict when one fits (dns.ExtendedErrorCode*:
	// 6 DNSSEC Bogus, 7 Signature Expired, 8 Signature Not Yet Valid,
	// 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC Missing, 1
	// Unsupported DNSKEY Algorithm, 2 Unsupported DS Digest Type); HasEDE
	// tells whether there is one.
	HasEDE bool
	EDE    uint16
	// Reason says in words why the verdict is not Secure (for the audit
	// log), empty for Secure.
	Reason string
	// Signer is the zone whose key signed the answer (the RRSIG's signer
	// name), KeyTag that key's tag, RRSIGTTL the original TTL of the
	// signature that covered the answer; zero when nothing verified.
	Signer   string
	KeyTag   uint16
	RRSIGTTL uint32
	// TTL caps the TTL of a Secure answer: the smallest of the records'
	// TTLs, the signatures' original TTLs and the seconds left until the
	// first signature expires (RFC 4035 §5.3.3). Zero for other verdicts.
	TTL uint32
}

// Fetcher asks for the RRset of name and type with DO and CD set, and
// returns the whole response (answer and authority sections, RRSIGs
// included). The validator calls it for DNSKEY and DS sets, and for DS
// proofs of insecure delegations.
type Fetcher interface {
	Fetch(ctx context.Context, name string, qtype uint16) (*dns.Msg, error)
}

// Config sets up a Validator.
type Config struct {
	// Anchors are the trust anchors: DS or DNSKEY records, by zone. When
	// none is given the root KSK built in (RootAnchors) is used.
	Anchors []dns.RR
	// NegativeAnchors are names under which answers are not validated
	// (RFC 7646): they are Insecure.
	NegativeAnchors []string
	// Skew is the leeway on signature inception and expiration; default
	// 5 minutes... (set by New when zero).
	Skew time.Duration
	// MaxNSEC3Iterations: NSEC3 records with more iterations make the
	// answer Insecure (RFC 9276 §3.2); default 150.
	MaxNSEC3Iterations int
	// KeyCacheSize bounds the zones whose DNSKEY and DS sets are kept;
	// default 10,000.
	KeyCacheSize int
	// Clock is the time source; nil means the real clock.
	Clock clockwork.Clock
}

// Defaults applied by New to a zero Config field.
const (
	DefaultSkew               = 5 * time.Minute
	DefaultMaxNSEC3Iterations = 150
	DefaultKeyCacheSize       = 10000
)

// rootAnchors are IANA's root-anchors.xml (KSK-2017 and KSK-2024) as DS
// records: key tag, algorithm 8, digest type 2 (SHA-256), digest.
var rootAnchors = []struct {
	tag    uint16
	digest string
}{
	{20326, "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"},
	{38696, "683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16"},
}

// RootAnchors returns the root zone's KSK trust anchors (DS of key tag
// 20326, and 38696), built in. Each call returns fresh records.
func RootAnchors() []dns.RR {
	out := make([]dns.RR, 0, len(rootAnchors))
	for _, a := range rootAnchors {
		out = append(out, &dns.DS{
			Hdr:        dns.RR_Header{Name: ".", Rrtype: dns.TypeDS, Class: dns.ClassINET, Ttl: 172800},
			KeyTag:     a.tag,
			Algorithm:  dns.RSASHA256,
			DigestType: dns.SHA256,
			Digest:     a.digest,
		})
	}
	return out
}

// anchor is the trust anchor of one zone: DS records, DNSKEYs, or both.
type anchor struct {
	ds   []*dns.DS
	keys []*dns.DNSKEY
}

// Validator validates answers. It is safe for concurrent use.
type Validator struct {
	fetch    Fetcher
	clock    clockwork.Clock
	skew     time.Duration
	maxIter  int
	anchors  map[string]*anchor
	negative []string
	cache    *keyCache
	flight   singleflight.Group
}

// New returns a validator over cfg that fetches what it needs through f.
// It fails on anchors that are not DS or DNSKEY records, on negative
// anchors that are not domain names, on negative limits and on a nil f.
func New(cfg Config, f Fetcher) (*Validator, error) {
	if f == nil {
		return nil, fmt.Errorf("dnssec: no fetcher")
	}
	if cfg.Skew < 0 {
		return nil, fmt.Errorf("dnssec: skew %v is negative", cfg.Skew)
	}
	if cfg.MaxNSEC3Iterations < 0 {
		return nil, fmt.Errorf("dnssec: max NSEC3 iterations %d is negative", cfg.MaxNSEC3Iterations)
	}
	if cfg.KeyCacheSize < 0 {
		return nil, fmt.Errorf("dnssec: key cache size %d is negative", cfg.KeyCacheSize)
	}
	v := &Validator{
		fetch:   f,
		clock:   cfg.Clock,
		skew:    cfg.Skew,
		maxIter: cfg.MaxNSEC3Iterations,
		anchors: map[string]*anchor{},
	}
	if v.clock == nil {
		v.clock = clockwork.NewRealClock()
	}
	if v.skew == 0 {
		v.skew = DefaultSkew
	}
	if v.maxIter == 0 {
		v.maxIter = DefaultMaxNSEC3Iterations
	}
	size := cfg.KeyCacheSize
	if size == 0 {
		size = DefaultKeyCacheSize
	}
	v.cache = newKeyCache(size)
	anchors := cfg.Anchors
	if len(anchors) == 0 {
		anchors = RootAnchors()
	}
	for i, rr := range anchors {
		if rr == nil {
			return nil, fmt.Errorf("dnssec: anchor %d is nil", i)
		}
		zone := canonical(rr.Header().Name)
		a := v.anchors[zone]
		if a == nil {
			a = &anchor{}
			v.anchors[zone] = a
		}
		switch x := rr.(type) {
		case *dns.DS:
			a.ds = append(a.ds, x)
		case *dns.DNSKEY:
			if x.Flags&dns.ZONE == 0 {
				return nil, fmt.Errorf("dnssec: anchor %d (%s DNSKEY): not a zone key", i, zone)
			}
			a.keys = append(a.keys, x)
		default:
			return nil, fmt.Errorf("dnssec: anchor %d (%s %s): not a DS or DNSKEY record",
				i, zone, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	for _, n := range cfg.NegativeAnchors {
		if _, ok := dns.IsDomainName(n); !ok || strings.TrimSpace(n) == "" {
			return nil, fmt.Errorf("dnssec: negative anchor %q is not a domain name", n)
		}
		v.negative = append(v.negative, canonical(n))
	}
	return v, nil
}

// closestAnchor returns the deepest anchored zone at or above name, or
// "" when none is.
func (v *Validator) closestAnchor(name string) string {
	for n := name; ; n = parent(n) {
		if v.anchors[n] != nil {
			return n
		}
		if n == "." {
			return ""
		}
	}
}

// negativeAnchor returns the negative trust anchor covering name, or "".
func (v *Validator) negativeAnchor(name string) string {
	for _, n := range v.negative {
		if under(n, name) {
			return n
		}
	}
	return ""
}

// maxChain bounds the CNAME/DNAME links followed in one answer, and
// maxAnswerSets the RRsets validated in one answer (each may send the
// validator down its own chain of trust).
const (
	maxChain      = 16
	maxAnswerSets = 64
)

// Validate validates resp, the answer (with DO set, CD set) to the
// question q. It never changes resp. RRsets of the answer section are
// validated one by one (each may have its own signer: a CNAME chain
// crossing zones); the end of the chain, when it has no data, needs an
// authenticated denial from the authority section (RFC 4035 §5.4). The
// authority section of a positive answer is not validated except for the
// proof of a wildcard expansion (RFC 4035 §5.3.4).
func (v *Validator) Validate(ctx context.Context, q dns.Question, resp *dns.Msg) Result {
	now := v.clock.Now()
	qname := canonical(q.Name)
	if resp == nil {
		return Result{Verdict: Indeterminate, Reason: "no response"}
	}
	if n := v.negativeAnchor(qname); n != "" {
		return Result{Verdict: Insecure, Reason: "negative trust anchor " + n}
	}
	if v.closestAnchor(qname) == "" {
		return Result{Verdict: Indeterminate, Reason: "no trust anchor covers " + qname}
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return Result{Verdict: Indeterminate, Reason: "rcode " + dns.RcodeToString[resp.Rcode] + " is not validated"}
	}
	var acc accumulator
	sets := groupRRsets(resp.Answer)
	if len(sets) > maxAnswerSets {
		return Result{Verdict: Indeterminate, Reason: fmt.Sprintf("%d RRsets in the answer, more than %d", len(sets), maxAnswerSets)}
	}
	for _, s := range sets {
		if len(s.sigs) == 0 && s.rrtype == dns.TypeCNAME && synthesized(s, sets) {
			continue // RFC 6672 §5.3.1: the DNAME carries the proof
		}
		acc.add(v.validateSet(ctx, now, s, resp.Ns))
	}
	sname, positive := chainEnd(qname, q.Qtype, sets)
	if !positive {
		nx := resp.Rcode == dns.RcodeNameError
		d := v.proveDenial(ctx, now, denialQuery{name: sname, qtype: q.Qtype, nx: nx, inclusive: true,
			signerOK: func(s string) bool { return under(s, sname) }}, resp.Ns)
		acc.add(d.outcome)
	}
	return acc.result()
}

// validateSet validates one RRset of the answer section, with the
// wildcard proof from auth when the RRSIG says it was expanded.
func (v *Validator) validateSet(ctx context.Context, now time.Time, s *rrset, auth []dns.RR) outcome {
	if len(s.sigs) == 0 {
		w := v.walkInsecure(ctx, s.name, true)
		if w.verdict != Secure {
			return w
		}
		return bogus(dns.ExtendedErrorCodeRRSIGsMissing,
			fmt.Sprintf("%s %s has no RRSIG in a signed zone", s.name, dns.TypeToString[s.rrtype]))
	}
	r := v.verifySet(ctx, now, s, func(signer string) bool { return under(signer, s.name) })
	owner := dns.CountLabel(s.name)
	if strings.HasPrefix(s.name, "*.") {
		owner-- // the literal wildcard: "*" is not counted (RFC 4034 §3.1.3)
	}
	if r.verdict != Secure || int(r.labels) >= owner {
		return r
	}
	// Wildcard expansion (RFC 4035 §5.3.4, RFC 5155 §8.8): the name
	// itself must be proven not to exist.
	encloser := suffix(s.name, int(r.labels))
	p := v.proveWildcard(ctx, now, s.name, encloser, r.signer, auth)
	if p.verdict != Secure {
		p.signer, p.keyTag, p.origTTL = r.signer, r.keyTag, r.origTTL
		return p
	}
	r.ttl = min(r.ttl, p.ttl)
	return r
}

// chainEnd follows the CNAME/DNAME chain from qname through the answer
// sets and returns the last name and whether it has data of type qtype.
func chainEnd(qname string, qtype uint16, sets []*rrset) (string, bool) {
	sname := qname
	for range maxChain {
		next := ""
		for _, s := range sets {
			switch {
			case s.name == sname && (s.rrtype == qtype || qtype == dns.TypeANY):
				return sname, true
			case s.name == sname && s.rrtype == dns.TypeCNAME && next == "":
				next = canonical(s.rrs[0].(*dns.CNAME).Target)
			case s.rrtype == dns.TypeDNAME && strictlyUnder(s.name, sname) && next == "":
				next = dnameTarget(sname, s.name, s.rrs[0].(*dns.DNAME).Target)
			}
		}
		if next == "" || next == sname {
			return sname, false
		}
		sname = next
	}
	return sname, false
}

// dnameTarget substitutes owner by target at the end of name (RFC 6672).
func dnameTarget(name, owner, target string) string {
	prefix := strings.TrimSuffix(name, owner)
	if owner == "." {
		prefix = name
	}
	t := canonical(target)
	if t == "." {
		return prefix
	}
	return prefix + t
}

// synthesized reports whether the unsigned CNAME s is what a DNAME of the
// answer synthesizes (RFC 6672 §5.3.1).
func synthesized(s *rrset, sets []*rrset) bool {
	if len(s.rrs) != 1 {
		return false
	}
	target := canonical(s.rrs[0].(*dns.CNAME).Target)
	for _, d := range sets {
		if d.rrtype == dns.TypeDNAME && len(d.sigs) > 0 && strictlyUnder(d.name, s.name) &&
			dnameTarget(s.name, d.name, d.rrs[0].(*dns.DNAME).Target) == target {
			return true
		}
	}
	return false
}
