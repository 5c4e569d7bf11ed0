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
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
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

// RootAnchors returns the root zone's KSK trust anchors (DS of key tag
// 20326, and 38696), built in.
func RootAnchors() []dns.RR { panic("not built yet") }

// Validator validates answers. It is safe for concurrent use.
type Validator struct{}

// New returns a validator over cfg that fetches what it needs through f.
// It fails on anchors that are not DS or DNSKEY records.
func New(cfg Config, f Fetcher) (*Validator, error) { panic("not built yet") }

// Validate validates resp, the answer (with DO set, CD set) to the
// question q. It never changes resp.
func (v *Validator) Validate(ctx context.Context, q dns.Question, resp *dns.Msg) Result {
	panic("not built yet")
}
