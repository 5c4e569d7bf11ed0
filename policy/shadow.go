package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/dnsedge/dnsedge/internal/field"
)

// Shadowed reports the rules that can never match, each a *field.Error
// at the rule's path ("rules[4]"), all joined; nil when there is none. A
// rule can never match when a rule tried before it (of higher priority,
// or of equal priority and earlier in the policy) matches every query it
// matches: the first decides.
func (p *Policy) Shadowed() error {
	var errs []error
	for j, b := range p.rules {
		for _, a := range p.rules[:j] {
			if covers(&a.m, a.mask, &b.m, b.mask) {
				errs = append(errs, field.Errorf(field.Index("rules", b.index),
					"rule %q can never match: rule %q (rules[%d]) matches every query it does and is tried first",
					b.decision.Rule, a.decision.Rule, a.index))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// covers reports whether every query matching b also matches a.
func covers(a *match, am uint16, b *match, bm uint16) bool {
	if am&^bm != 0 {
		return false // a constrains a dimension b leaves open
	}
	return subset(b.clientID, a.clientID, eq) &&
		subset(b.source, a.source, netContains) &&
		subset(b.ecs, a.ecs, netContains) &&
		subset(b.tags, a.tags, eq) &&
		subset(b.prefix, a.prefix, strings.HasPrefix) &&
		subset(b.suffix, a.suffix, isBelow) &&
		subset(b.qtype, a.qtype, eq) &&
		subset(b.listener, a.listener, eq)
}

// subset reports whether each of bs is within one of as; an empty as
// leaves the dimension open.
func subset[T any](bs, as []T, within func(b, a T) bool) bool {
	if len(as) == 0 {
		return true
	}
	for _, b := range bs {
		if !slices.ContainsFunc(as, func(a T) bool { return within(b, a) }) {
			return false
		}
	}
	return true
}

func eq[T comparable](b, a T) bool { return a == b }

func netContains(b, a netip.Prefix) bool { return a.Bits() <= b.Bits() && a.Contains(b.Addr()) }

// isBelow reports whether domain b is a or below it (both lower-case
// FQDNs).
func isBelow(b, a string) bool {
	return a == "." || b == a || strings.HasSuffix(b, "."+a)
}
