package pipeline

import (
	"fmt"
	"time"
)

// TSIGState is what TSIG verification (RFC 8945) found about a query. The
// zero value, TSIGNone, means the query carried no TSIG record or no
// stage checked it; the verify stage adds the states it reaches
// (verified, bad key, bad signature, bad time) after it.
type TSIGState uint8

// TSIG states.
const (
	TSIGNone TSIGState = iota
	// TSIGVerified: the query's MAC verified with a key dnsedge holds,
	// within the fudge window.
	TSIGVerified
	// TSIGBadKey: the key is not one dnsedge holds, or its algorithm is
	// not the key's (RFC 8945 §5.2.1). Such a query may still be
	// forwarded unchanged to a server that holds the key (§5.5).
	TSIGBadKey
	// TSIGBadSig: the MAC did not verify (RFC 8945 §5.2.2).
	TSIGBadSig
	// TSIGBadTime: the MAC verified but the time signed is outside the
	// fudge window (RFC 8945 §5.2.3).
	TSIGBadTime
	// TSIGRequired: the query was unsigned where a listener or a policy
	// rule requires TSIG, and was refused.
	TSIGRequired
)

var tsigNames = [...]string{"none", "verified", "badkey", "badsig", "badtime", "unsigned_refused"}

func (s TSIGState) String() string { return enumString(tsigNames[:], uint8(s), "tsig") }

// Source says where the answer to a query came from.
type Source uint8

// Answer sources. The zero value, SourceNone, means no stage claimed the
// answer: the query failed before any did, or no stage that sets it ran.
const (
	SourceNone Source = iota
	// SourceUpstream: an upstream answered. A query that waited for an
	// identical one in flight (cache coalescing) and got its answer is
	// SourceUpstream too, with Outcome.Coalesced set and the path that
	// answered the other query.
	SourceUpstream
	// SourceCache: a fresh cache entry, a cached failure included.
	SourceCache
	// SourceStale: an expired cache entry served stale (RFC 8767).
	SourceStale
	// SourceZone: a shared local zone.
	SourceZone
	// SourceTenantZone: a zone of the query's tenant (Outcome.Tenant).
	SourceTenantZone
	// SourceFallback: the fallback zone, every upstream path having
	// failed.
	SourceFallback
	// SourceSynthesized: an answer dnsedge made without asking anyone,
	// such as a denial from the NXDOMAIN cache (RFC 8020).
	SourceSynthesized
	// SourcePolicy: a policy rule's local answer (NXDOMAIN, NODATA,
	// REFUSED or fixed records).
	SourcePolicy
)

var sourceNames = [...]string{"none", "upstream", "cache", "stale", "zone", "tenant_zone", "fallback", "synthesized", "policy"}

// String returns the name the query log uses: "upstream", "cache",
// "stale", "zone", "tenant_zone", "fallback", "synthesized" ("none" for
// SourceNone).
func (s Source) String() string { return enumString(sourceNames[:], uint8(s), "source") }

// DNSSECVerdict is the result of validating an answer (RFC 4035 §4.3).
// The zero value, DNSSECNone, means nothing validated it.
type DNSSECVerdict uint8

// DNSSEC verdicts.
const (
	DNSSECNone DNSSECVerdict = iota
	DNSSECSecure
	DNSSECInsecure
	DNSSECBogus
	DNSSECIndeterminate
)

var dnssecNames = [...]string{"none", "secure", "insecure", "bogus", "indeterminate"}

func (v DNSSECVerdict) String() string { return enumString(dnssecNames[:], uint8(v), "dnssec") }

func enumString(names []string, v uint8, what string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", what, v)
}

// Outcome is what the stages learned while answering one query, for the
// query log and the listeners. Each field is set by the stage that knows
// it, on the Request it was given; the zero value means nothing was
// learned. It holds no pointers of its own beyond strings, so copying a
// Request copies it without allocating.
type Outcome struct {
	// Source is where the answer came from; set by the forward handler
	// (upstream), the cache (cache, stale, coalesced followers), the zone
	// stages (zone, tenant zone, fallback) and the NXDOMAIN cache
	// (synthesized). A stage outside another one overwrites it.
	Source Source
	// Coalesced is set with SourceUpstream when the answer was another
	// identical query's, waited for instead of asked again.
	Coalesced bool
	// Path is the ID of the upstream path that answered (transport's
	// Result.Path.ID), set by the forward handler and copied to
	// coalesced followers; empty when no upstream answered.
	Path string
	// Tenant is the tenant the tenant zone stage picked for the query,
	// whether or not one of its zones answered; empty for none.
	Tenant string
	// Rule names the policy rule that matched; set by policy. Policy is
	// the version of the policy in force, set for every query while
	// there is one.
	Rule   string
	Policy string
	// DNSSEC is the validation verdict; set by DNSSEC validation.
	DNSSEC DNSSECVerdict
	// HasEDE tells that a stage produced an Extended DNS Error (RFC
	// 8914): EDE is its INFO-CODE and EDEText why, which may say more
	// than the EXTRA-TEXT sent to the client (a stale answer's reason).
	// Listeners and the query log take the EDE of a *Error returned by
	// the handler over this one.
	HasEDE  bool
	EDE     uint16
	EDEText string
	// Latency is the time from Received until the handler chain
	// returned; set by the query log for its line and by the listener
	// once ServeDNS has returned.
	Latency time.Duration
}

// SetEDE records the Extended DNS Error a stage produced.
func (o *Outcome) SetEDE(code uint16, text string) {
	o.HasEDE, o.EDE, o.EDEText = true, code, text
}
