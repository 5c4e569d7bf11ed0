package policy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/miekg/dns"
)

// Dimensions of a match, most specific first: a rule's priority is the
// number of dimensions it constrains, then which (the bit of client id
// weighs most), then its order in the policy.
const (
	dimClientID = iota
	dimSource
	dimECS
	dimTags
	dimPrefix
	dimSuffix
	dimQType
	dimListener
	nDimsAll
)

// nDims counts the dimensions with one value per query; tags, which has
// several, is matched apart.
const nDims = nDimsAll - 1

var dimNames = [nDimsAll]string{"client_id", "source", "ecs", "tags", "qname_prefix", "qname_suffix", "qtype", "listener"}

// listenerKinds are the listener kinds a rule may name.
var listenerKinds = []string{"udp", "tcp", "dot", "doh", "doq"}

// rule is a checked rule.
type rule struct {
	index    int // in the policy
	mask     uint16
	m        match
	decision Decision
	split    *split
}

// match is a rule's match, parsed.
type match struct {
	source, ecs []netip.Prefix
	clientID    []string
	prefix      []string // lower case, without a trailing "*"
	suffix      []string // lower-case FQDNs
	qtype       []uint16
	listener    []string
	tags        []string
}

// Validate reports every problem of the policy, each a *field.Error at a
// path relative to the policy ("rules[3].match.source[0]"), all joined.
func (s *Spec) Validate() error {
	_, err := Compile(*s)
	return err
}

// Compile checks spec and compiles it into a Policy. It reports every
// problem as Validate does. An empty spec compiles to a policy that
// matches nothing.
func Compile(spec Spec) (*Policy, error) {
	var errs []error
	p := &Policy{version: spec.Version, sticky: spec.Sticky}
	if p.sticky == "" {
		p.sticky = StickyClientID
	}
	switch p.sticky {
	case StickyClientID, StickySource, StickyECS:
	default:
		errs = append(errs, field.Errorf("sticky", "%q is not client_id, source or ecs", spec.Sticky))
	}
	if len(spec.Rules) > 0 && strings.TrimSpace(spec.Version) == "" {
		errs = append(errs, field.Errorf("version", "a policy with rules needs a version"))
	}
	names := make(map[string]int)
	groups := make(map[string]bool)
	for i, rs := range spec.Rules {
		at := field.Index("rules", i)
		r, rerrs := compileRule(i, at, rs)
		errs = append(errs, rerrs...)
		if j, dup := names[r.decision.Rule]; dup {
			errs = append(errs, field.Errorf(field.Join(at, "name"), "rule %q already defined at rules[%d]", r.decision.Rule, j))
		} else {
			names[r.decision.Rule] = i
		}
		if g := r.decision.Group; g != "" {
			groups[g] = true
		}
		if r.split != nil {
			for _, g := range r.split.groups {
				if g != "" {
					groups[g] = true
				}
			}
		}
		p.rules = append(p.rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for g := range groups {
		p.groups = append(p.groups, g)
	}
	slices.Sort(p.groups)
	p.internGroups()
	slices.SortStableFunc(p.rules, func(a, b *rule) int { return comparePriority(a, b) })
	p.m = buildMatcher(p.rules)
	p.usesECS = p.sticky == StickyECS
	for _, r := range p.rules {
		p.usesECS = p.usesECS || len(r.m.ecs) > 0
	}
	return p, nil
}

// internGroups makes every rule's route and split groups the strings of
// p.groups, one string a group: a caller comparing a decision's group
// with p's own string for it (see Group) finds it equal at its first
// byte's address.
func (p *Policy) internGroups() {
	one := func(g *string) {
		if i, ok := slices.BinarySearch(p.groups, *g); ok {
			*g = p.groups[i]
		}
	}
	for _, r := range p.rules {
		one(&r.decision.Group)
		if sp := r.split; sp != nil {
			one(&sp.canary)
			one(&sp.base)
			for i := range sp.groups {
				one(&sp.groups[i])
			}
		}
	}
}

// comparePriority orders rules most specific first, then by order in the
// policy.
func comparePriority(a, b *rule) int {
	ca, cb := popcount(a.mask), popcount(b.mask)
	if ca != cb {
		return cb - ca
	}
	if a.mask != b.mask {
		return int(b.mask) - int(a.mask)
	}
	return a.index - b.index
}

func popcount(m uint16) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// compileRule checks one rule; the rule is returned even when it has
// problems, for the checks across rules.
func compileRule(i int, at string, rs RuleSpec) (*rule, []error) {
	var errs []error
	r := &rule{index: i}
	r.decision.Rule = rs.Name
	if rs.Name == "" {
		r.decision.Rule = field.Index("rules", i)
	}
	r.decision.Matched = true
	r.m, r.mask, errs = compileMatch(field.Join(at, "match"), rs.Match)

	if rs.Route == "" && rs.Split == nil && len(rs.Tags) == 0 && rs.ECS == nil && rs.Answer == nil && !rs.AllowANY && !rs.RequireTSIG {
		errs = append(errs, field.Errorf(at, "rule %q does nothing: give it route, split, tags, ecs, answer, allow_any or require_tsig", r.decision.Rule))
	}
	if rs.Route != "" && rs.Split != nil {
		errs = append(errs, field.Errorf(field.Join(at, "split"), "a rule has route or split, not both"))
	}
	if rs.Answer != nil && (rs.Route != "" || rs.Split != nil) {
		errs = append(errs, field.Errorf(field.Join(at, "answer"), "a rule that answers locally has no route or split"))
	}
	r.decision.Group = rs.Route
	if rs.Split != nil {
		seed := rs.Split.Seed
		if seed == "" {
			seed = rs.Name
		}
		var serrs []error
		r.split, serrs = compileSplit(field.Join(at, "split"), *rs.Split, seed)
		errs = append(errs, serrs...)
	}
	for j, t := range rs.Tags {
		if err := checkTag(t); err != nil {
			errs = append(errs, field.Wrap(field.Index(field.Join(at, "tags"), j), err))
		}
	}
	r.decision.Tags = rs.Tags
	if rs.ECS != nil {
		var eerrs []error
		r.decision.ECS, eerrs = compileECS(field.Join(at, "ecs"), *rs.ECS)
		errs = append(errs, eerrs...)
	}
	if rs.Answer != nil {
		var aerrs []error
		r.decision.Answer, aerrs = compileAnswer(field.Join(at, "answer"), *rs.Answer)
		errs = append(errs, aerrs...)
	}
	r.decision.AllowANY = rs.AllowANY
	r.decision.RequireTSIG = rs.RequireTSIG
	return r, errs
}

// compileMatch parses a match; mask has the bit of every dimension it
// constrains.
func compileMatch(at string, ms MatchSpec) (m match, mask uint16, errs []error) {
	list := func(d int, n int) {
		if n > 0 {
			mask |= 1 << (nDimsAll - 1 - d)
		}
	}
	nets := func(key string, vals []string) []netip.Prefix {
		var out []netip.Prefix
		for j, v := range vals {
			p, err := ParseNetwork(v)
			if err != nil {
				errs = append(errs, field.Wrap(field.Index(field.Join(at, key), j), err))
				continue
			}
			out = append(out, p)
		}
		return out
	}
	m.source = nets("source", ms.Source)
	list(dimSource, len(ms.Source))
	m.ecs = nets("ecs", ms.ECS)
	list(dimECS, len(ms.ECS))
	for j, id := range ms.ClientID {
		if id == "" {
			errs = append(errs, field.Errorf(field.Index(field.Join(at, "client_id"), j), "client id is empty"))
		}
		m.clientID = append(m.clientID, id)
	}
	list(dimClientID, len(ms.ClientID))
	for j, v := range ms.QNamePrefix {
		f := field.Index(field.Join(at, "qname_prefix"), j)
		v = strings.ToLower(strings.TrimSuffix(v, "*"))
		switch {
		case v == "":
			errs = append(errs, field.Errorf(f, "prefix is empty"))
		case strings.ContainsAny(v, "* \t\n"):
			errs = append(errs, field.Errorf(f, "%q: a prefix is plain text, with at most a \"*\" at its end", ms.QNamePrefix[j]))
		}
		m.prefix = append(m.prefix, v)
	}
	list(dimPrefix, len(ms.QNamePrefix))
	for j, v := range ms.QNameSuffix {
		if _, ok := dns.IsDomainName(v); !ok || v == "" {
			errs = append(errs, field.Errorf(field.Index(field.Join(at, "qname_suffix"), j), "%q is not a domain name", v))
			continue
		}
		m.suffix = append(m.suffix, dns.CanonicalName(v))
	}
	list(dimSuffix, len(ms.QNameSuffix))
	for j, v := range ms.QType {
		t, err := parseType(v)
		if err != nil {
			errs = append(errs, field.Wrap(field.Index(field.Join(at, "qtype"), j), err))
			continue
		}
		m.qtype = append(m.qtype, t)
	}
	list(dimQType, len(ms.QType))
	for j, v := range ms.Listener {
		if !slices.Contains(listenerKinds, v) {
			errs = append(errs, field.Errorf(field.Index(field.Join(at, "listener"), j), "%q is not a listener kind (%s)", v, strings.Join(listenerKinds, ", ")))
			continue
		}
		m.listener = append(m.listener, v)
	}
	list(dimListener, len(ms.Listener))
	for j, v := range ms.Tags {
		if err := checkTag(v); err != nil {
			errs = append(errs, field.Wrap(field.Index(field.Join(at, "tags"), j), err))
		}
		m.tags = append(m.tags, v)
	}
	list(dimTags, len(ms.Tags))
	return m, mask, errs
}

// parseType parses a query type by name or as TYPEnnn (RFC 3597).
func parseType(s string) (uint16, error) {
	u := strings.ToUpper(s)
	if t, ok := dns.StringToType[u]; ok {
		return t, nil
	}
	if n, ok := strings.CutPrefix(u, "TYPE"); ok {
		if v, err := strconv.ParseUint(n, 10, 16); err == nil {
			return uint16(v), nil
		}
	}
	return 0, fmt.Errorf("%q is not a query type", s)
}

// checkTag checks a tag: text without spaces, at most 255 bytes so that
// it fits an EDNS option.
func checkTag(t string) error {
	switch {
	case t == "":
		return errors.New("tag is empty")
	case len(t) > 255:
		return fmt.Errorf("tag %.20q... is longer than 255 bytes", t)
	case strings.ContainsAny(t, " \t\r\n"):
		return fmt.Errorf("tag %q has spaces", t)
	}
	return nil
}

// compileECS checks an ECS decision and fills its defaults.
func compileECS(at string, s ECSSpec) (ECSDecision, []error) {
	var errs []error
	d := ECSDecision{Mode: ECSMode(s.Mode), V4Bits: 24, V6Bits: 56}
	switch d.Mode {
	case ECSPass, ECSStrip, ECSAdd, ECSReplace:
	case "":
		errs = append(errs, field.Errorf(field.Join(at, "mode"), "an ecs decision needs a mode: pass, strip, add or replace"))
	default:
		errs = append(errs, field.Errorf(field.Join(at, "mode"), "%q is not pass, strip, add or replace", s.Mode))
	}
	cuts := d.Mode == ECSAdd || d.Mode == ECSReplace
	if s.V4Bits != nil {
		d.V4Bits = *s.V4Bits
		if *s.V4Bits < 0 || *s.V4Bits > 32 {
			errs = append(errs, field.Errorf(field.Join(at, "v4_bits"), "%d is not between 0 and 32", *s.V4Bits))
		}
	}
	if s.V6Bits != nil {
		d.V6Bits = *s.V6Bits
		if *s.V6Bits < 0 || *s.V6Bits > 128 {
			errs = append(errs, field.Errorf(field.Join(at, "v6_bits"), "%d is not between 0 and 128", *s.V6Bits))
		}
	}
	if !cuts && (s.V4Bits != nil || s.V6Bits != nil) {
		errs = append(errs, field.Errorf(at, "v4_bits and v6_bits are for the add and replace modes"))
	}
	if s.Prefix != "" {
		p, err := netip.ParsePrefix(s.Prefix)
		switch {
		case err != nil:
			errs = append(errs, field.Wrap(field.Join(at, "prefix"), err))
		case d.Mode != ECSReplace:
			errs = append(errs, field.Errorf(field.Join(at, "prefix"), "prefix is for the replace mode"))
		default:
			d.Prefix = normalize(p)
		}
	}
	if !cuts {
		d.V4Bits, d.V6Bits = 0, 0
	}
	return d, errs
}

// compileAnswer parses a local answer.
func compileAnswer(at string, s AnswerSpec) (*Answer, []error) {
	var errs []error
	a := &Answer{}
	switch {
	case s.Rcode != "" && len(s.Records) > 0:
		errs = append(errs, field.Errorf(at, "an answer has rcode or records, not both"))
	case s.Rcode == "" && len(s.Records) == 0:
		errs = append(errs, field.Errorf(at, "an answer needs rcode (NXDOMAIN, NODATA, REFUSED) or records"))
	}
	switch strings.ToUpper(s.Rcode) {
	case "", "NODATA":
		a.Rcode = dns.RcodeSuccess
	case "NXDOMAIN":
		a.Rcode = dns.RcodeNameError
	case "REFUSED":
		a.Rcode = dns.RcodeRefused
	default:
		errs = append(errs, field.Errorf(field.Join(at, "rcode"), "%q is not NXDOMAIN, NODATA or REFUSED", s.Rcode))
	}
	for j, text := range s.Records {
		f := field.Index(field.Join(at, "records"), j)
		rr, err := dns.NewRR(text)
		switch {
		case err != nil:
			errs = append(errs, field.Wrap(f, err))
		case rr == nil:
			errs = append(errs, field.Errorf(f, "no record"))
		case !strings.HasSuffix(strings.Fields(text)[0], "."):
			errs = append(errs, field.Errorf(f, "%q: write the owner name in full, ending with a dot", text))
		default:
			a.Records = append(a.Records, rr)
		}
	}
	return a, errs
}

// compileSplit checks a split.
func compileSplit(at string, s SplitSpec, seed string) (*split, []error) {
	var errs []error
	sp := &split{canary: s.Canary, base: s.Base}
	sp.setSeed(seed)
	modes := 0
	if s.Percent != nil {
		modes++
		sp.mode = splitPercent
		pc := *s.Percent
		if math.IsNaN(pc) || pc < 0 || pc > 100 {
			errs = append(errs, field.Errorf(field.Join(at, "percent"), "%v is not between 0 and 100", pc))
		} else {
			sp.threshold = uint64(math.Round(pc * 100))
		}
	}
	if s.Weights != nil {
		modes++
		sp.mode = splitWeights
		if len(s.Weights) < 2 {
			errs = append(errs, field.Errorf(field.Join(at, "weights"), "weights need two groups or more"))
		}
		for g := range s.Weights {
			sp.groups = append(sp.groups, g)
		}
		slices.Sort(sp.groups) // map order is random; the walk must not be
		for _, g := range sp.groups {
			w := s.Weights[g]
			if g == "" {
				errs = append(errs, field.Errorf(field.Join(at, "weights"), "a group name is empty"))
			}
			if w <= 0 || w > 1_000_000 {
				errs = append(errs, field.Errorf(field.Join(field.Join(at, "weights"), g), "weight %d is not between 1 and 1000000", w))
				continue
			}
			sp.total += uint64(w)
			sp.cum = append(sp.cum, sp.total)
		}
		if s.Canary != "" || s.Base != "" {
			errs = append(errs, field.Errorf(at, "a weight split names its groups in weights, without canary or base"))
		}
	}
	if s.Whitelist != nil {
		modes++
		sp.mode = splitWhitelist
		w := s.Whitelist
		if len(w.ClientID) == 0 && len(w.Source) == 0 {
			errs = append(errs, field.Errorf(field.Join(at, "whitelist"), "a whitelist needs client_id or source"))
		}
		for j, id := range w.ClientID {
			if id == "" {
				errs = append(errs, field.Errorf(field.Index(field.Join(at, "whitelist.client_id"), j), "client id is empty"))
			}
			sp.white.AddID(id, struct{}{})
		}
		for j, n := range w.Source {
			p, err := ParseNetwork(n)
			if err != nil {
				errs = append(errs, field.Wrap(field.Index(field.Join(at, "whitelist.source"), j), err))
				continue
			}
			sp.white.AddNetwork(p, struct{}{})
		}
	}
	switch modes {
	case 0:
		errs = append(errs, field.Errorf(at, "a split needs percent, weights or whitelist"))
	case 1:
	default:
		errs = append(errs, field.Errorf(at, "a split has one of percent, weights and whitelist"))
	}
	if sp.mode != splitWeights {
		if s.Canary == "" {
			errs = append(errs, field.Errorf(field.Join(at, "canary"), "the split needs a canary group"))
		}
		if s.Base == "" {
			errs = append(errs, field.Errorf(field.Join(at, "base"), "the split needs a base group"))
		}
		sp.groups = []string{s.Canary, s.Base}
	}
	if sp.mode != splitWhitelist && seed == "" {
		errs = append(errs, field.Errorf(at, "a percent or weight split needs a rule name or a seed, so clients keep their side when rules are added"))
	}
	return sp, errs
}
