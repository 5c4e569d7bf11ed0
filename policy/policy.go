package policy

import (
	"net/netip"
	"slices"

	"github.com/miekg/dns"
)

// Input is what a decision is made from. The caller fills it from the
// query; Decide does not keep it.
type Input struct {
	// Source is the client's address.
	Source netip.Addr
	// ECS is the subnet of the query's ECS option; the zero Prefix when
	// it has none.
	ECS netip.Prefix
	// ClientID is the DoH path or DoT/DoQ SNI label; empty when none.
	ClientID string
	// QName is the query name, an FQDN ("www.example.com."), in any
	// case: ASCII letters match without regard to it.
	QName string
	// QType is the query type.
	QType uint16
	// Listener is the listener kind: udp, tcp, dot, doh or doq.
	Listener string
	// Tags are the tags already on the request.
	Tags []string
}

// ECSMode is what to do with the ECS option of the forwarded query.
type ECSMode string

// ECS modes; the empty mode makes no decision.
const (
	ECSPass    ECSMode = "pass"
	ECSStrip   ECSMode = "strip"
	ECSAdd     ECSMode = "add"
	ECSReplace ECSMode = "replace"
)

// ECSDecision is a rule's ECS decision (see ECSSpec).
type ECSDecision struct {
	Mode           ECSMode
	V4Bits, V6Bits int
	// Prefix replaces the client's subnet (replace mode); the zero
	// Prefix when the source address is to be cut instead.
	Prefix netip.Prefix
}

// Answer is a local answer: Rcode with no records for NXDOMAIN,
// REFUSED and NODATA (NOERROR), or NOERROR with Records.
type Answer struct {
	Rcode   int
	Records []dns.RR
}

// Decision is what Decide found. Its slices and Answer belong to the
// Policy and are shared by every decision: read them, copy before
// changing.
type Decision struct {
	// Rule names the rule that matched; empty when none did.
	Rule    string
	Matched bool
	// Group is the upstream group (the route, or the side of the split
	// the client is on); empty when the rule names none.
	Group string
	// Tags are the tags the rule sets.
	Tags []string
	// ECS is the rule's ECS decision; Mode is empty for none.
	ECS ECSDecision
	// Answer answers locally; nil to forward.
	Answer *Answer
	// AllowANY forwards an ANY query as asked.
	AllowANY bool
	// RequireTSIG refuses the query unless its TSIG verified.
	RequireTSIG bool
}

// Policy is a compiled policy: a matcher built once per configuration
// generation, so that the cost of a decision does not grow with the
// number of rules beyond one word of 64 rules per dimension. It is
// read-only and safe for concurrent use.
type Policy struct {
	version string
	sticky  string
	rules   []*rule // by priority: index i is bit i of the sets
	m       *matcher
	groups  []string
	usesECS bool // a rule matches on ECS, or splits stick by it
}

// Version returns the policy's version; empty for an empty policy.
func (p *Policy) Version() string { return p.version }

// UsesECS reports whether Input.ECS can change a decision: when it
// cannot, the caller need not look for the query's ECS option.
func (p *Policy) UsesECS() bool { return p.usesECS }

// Len returns the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

// Groups returns the upstream groups the rules name (routes and the sides
// of splits), sorted, so that the caller can check that they exist.
func (p *Policy) Groups() []string { return p.groups }

// Group returns p's string for group name, which every decision's group
// of that name shares, or name when no rule of p names it.
func (p *Policy) Group(name string) string {
	if i, ok := slices.BinarySearch(p.groups, name); ok {
		return p.groups[i]
	}
	return name
}

// Decide returns the decision of the most specific rule matching in:
// rules that constrain more of client id, source, ECS, tags, qname
// prefix, qname suffix, qtype and listener (in that order of weight)
// come first, and ties go by order in the policy. A query no rule
// matches gets the zero Decision. Decide does not allocate unless the
// request carries more than eight tags the policy matches on.
func (p *Policy) Decide(in *Input) Decision {
	d, group := p.Match(in)
	if d == nil {
		return Decision{}
	}
	out := *d
	out.Group = group
	return out
}

// Match is Decide without the copy, for the query path: it returns the
// matching rule's own decision, which is shared and must not be changed,
// and the group the query goes to (the route, or the side of the rule's
// split the client is on), whatever d.Group says; nil when no rule
// matches.
func (p *Policy) Match(in *Input) (d *Decision, group string) {
	i := p.m.first(in, nil)
	if i < 0 {
		return nil, ""
	}
	r := p.rules[i]
	if r.split != nil {
		return &r.decision, r.split.group(in, p.sticky)
	}
	return &r.decision, r.decision.Group
}
