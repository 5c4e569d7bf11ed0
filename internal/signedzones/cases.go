package signedzones

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Verdicts, as the audit log spells them.
const (
	Secure   = "secure"
	Insecure = "insecure"
	Bogus    = "bogus"
)

// NoEDE in Case.EDE: the answer carries no Extended DNS Error.
const NoEDE = -1

// Case is one question to the tree and what a validator must answer.
type Case struct {
	Name  string
	Type  uint16
	Rcode int
	// Verdict is secure, insecure or bogus. Secure answers carry AD to a
	// query with DO or AD (RFC 6840 §5.8); bogus ones are SERVFAIL.
	Verdict string
	// EDE is the Extended DNS Error code (RFC 8914) dnsedge must attach,
	// or NoEDE.
	EDE int
	// UnboundEDE is what unbound 1.17 attaches instead when it differs
	// (0: the same as EDE). unbound calls a denial without its NSEC
	// "DNSSEC Bogus" (nameerror proof failed) where dnsedge says "NSEC
	// Missing", and attaches no EDE to an insecure answer.
	UnboundEDE int
	// Why says what the case proves.
	Why string
}

func (c Case) String() string {
	return c.Name + "/" + dns.TypeToString[c.Type]
}

// Zone returns the zone of the tree that holds the case's name: the
// longest origin it is under.
func (c Case) Zone() string {
	best := Parent
	for _, z := range tree() {
		if dns.IsSubDomain(z.origin, c.Name) && len(z.origin) > len(best) {
			best = z.origin
		}
	}
	return best
}

const (
	a, aaaa  = dns.TypeA, dns.TypeAAAA
	noerror  = dns.RcodeSuccess
	nxdomain = dns.RcodeNameError
	servfail = dns.RcodeServerFailure
)

// Cases is every question the tests ask, in the order they ask it: a
// validator may remember a zone's failure (unbound marks its key bad), so
// within a zone the names that must still validate come before the
// failing ones.
var Cases = []Case{
	{Name: "www.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "positive answer under the anchor"},
	{Name: "www.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "NODATA proven by NSEC"},
	{Name: "nope.test.", Type: a, Rcode: nxdomain, Verdict: Secure, EDE: NoEDE, Why: "NXDOMAIN proven by NSEC"},

	{Name: "www.nsec.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "chain through a DS, algorithm 13"},
	{Name: "www.nsec.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "NODATA proven by NSEC"},
	{Name: "nope.nsec.test.", Type: a, Rcode: nxdomain, Verdict: Secure, EDE: NoEDE, Why: "NXDOMAIN proven by NSEC"},

	{Name: "www.nsec3.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "algorithm 8"},
	{Name: "www.nsec3.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "NODATA proven by NSEC3"},
	{Name: "nope.nsec3.test.", Type: a, Rcode: nxdomain, Verdict: Secure, EDE: NoEDE, Why: "NXDOMAIN: closest encloser proof"},
	{Name: "x.w.nsec3.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "wildcard expansion proven by NSEC3"},
	{Name: "x.w.nsec3.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "wildcard NODATA proven by NSEC3"},

	{Name: "www.optout.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "signed name in an opt-out zone"},
	{Name: "www.optout.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "NODATA proven by NSEC3 in an opt-out zone"},
	{Name: "nope.optout.test.", Type: a, Rcode: nxdomain, Verdict: Insecure, EDE: NoEDE, Why: "an opt-out NSEC3 covers the next closer name (RFC 5155 §9.2)"},
	{Name: "www.unsigned.optout.test.", Type: a, Rcode: noerror, Verdict: Insecure, EDE: NoEDE, Why: "unsigned delegation covered by opt-out"},
	{Name: "nope.unsigned.optout.test.", Type: a, Rcode: nxdomain, Verdict: Insecure, EDE: NoEDE, Why: "NXDOMAIN in the unsigned child"},

	{Name: "ok.tampered.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "the intact name of the tampered zone"},
	{Name: "www.tampered.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeDNSBogus), Why: "record changed after signing"},
	{Name: "www.tampered.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "another type at the tampered name"},

	{Name: "ok.nosig.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "the signed name of the zone"},
	{Name: "www.nosig.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeRRSIGsMissing), Why: "answer without its RRSIG"},

	{Name: "www.nonsec.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "positive answers need no NSEC"},
	{Name: "zz.nonsec.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeNSECMissing), UnboundEDE: int(dns.ExtendedErrorCodeDNSBogus), Why: "NXDOMAIN without the covering NSEC"},
	// No NODATA case: named answers a NODATA question in a zone without
	// the name's NSEC with SERVFAIL itself, so no validator sees the
	// unproven denial (the dnssec package's tests have that case).

	{Name: "www.expired.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeSignatureExpired), Why: "signatures expired in 2020"},

	{Name: "www.badds.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeDNSKEYMissing), Why: "no DNSKEY matches the parent's DS"},
	{Name: "nope.badds.test.", Type: a, Rcode: servfail, Verdict: Bogus, EDE: int(dns.ExtendedErrorCodeDNSKEYMissing), UnboundEDE: int(dns.ExtendedErrorCodeDNSBogus), Why: "denial under a key that does not match its DS"},

	{Name: "www.unsupported.test.", Type: a, Rcode: noerror, Verdict: Insecure, EDE: int(dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm), UnboundEDE: NoEDE, Why: "only an unknown algorithm in the DS set: insecure (RFC 4035 §5.2)"},
	{Name: "nope.unsupported.test.", Type: a, Rcode: nxdomain, Verdict: Insecure, EDE: int(dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm), UnboundEDE: NoEDE, Why: "denial in a zone of an unknown algorithm"},

	{Name: "x.wild.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "wildcard expansion proven by NSEC"},
	{Name: "x.wild.test.", Type: aaaa, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "wildcard NODATA proven by NSEC"},
	{Name: "www.wild.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "a name the wildcard does not cover"},

	{Name: "www.ed448.test.", Type: a, Rcode: noerror, Verdict: Secure, EDE: NoEDE, Why: "algorithm 16 (ED448)"},
	{Name: "nope.ed448.test.", Type: a, Rcode: nxdomain, Verdict: Secure, EDE: NoEDE, Why: "NXDOMAIN proven by NSEC signed with ED448"},

	{Name: "www.insecure.test.", Type: a, Rcode: noerror, Verdict: Insecure, EDE: NoEDE, Why: "delegation without DS, proven by the parent's NSEC"},
	{Name: "www.insecure.test.", Type: aaaa, Rcode: noerror, Verdict: Insecure, EDE: NoEDE, Why: "NODATA in an unsigned zone"},
	{Name: "nope.insecure.test.", Type: a, Rcode: nxdomain, Verdict: Insecure, EDE: NoEDE, Why: "NXDOMAIN in an unsigned zone"},
}

// Query returns a query for c with the given flags; do sets the DO bit
// (with EDNS0 and a 1232-byte buffer), ad and cd the header bits.
func Query(c Case, do, ad, cd bool) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(c.Name, c.Type)
	q.AuthenticatedData = ad
	q.CheckingDisabled = cd
	q.SetEdns0(1232, do)
	return q
}

// EDE returns the first Extended DNS Error code of m, or NoEDE.
func EDE(m *dns.Msg) int {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return int(e.InfoCode)
			}
		}
	}
	return NoEDE
}

// Check compares an answer to a query made with DO or AD against the
// case: rcode, AD (set exactly for secure answers) and, when checkEDE,
// the Extended DNS Error want. It returns what differs, or nil.
func Check(c Case, m *dns.Msg, checkEDE bool, want int) error {
	var bad []string
	if m.Rcode != c.Rcode {
		bad = append(bad, fmt.Sprintf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[c.Rcode]))
	}
	if ad := c.Verdict == Secure; m.AuthenticatedData != ad {
		bad = append(bad, fmt.Sprintf("AD %v, want %v (%s)", m.AuthenticatedData, ad, c.Verdict))
	}
	if got := EDE(m); checkEDE && got != want {
		bad = append(bad, fmt.Sprintf("EDE %d, want %d", got, want))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%s (%s): %s", c, c.Why, strings.Join(bad, "; "))
}
