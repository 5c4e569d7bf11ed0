package zone

import (
	"fmt"
	"sort"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/miekg/dns"
)

// A Set is a group of zones with distinct origins; a query is answered by
// the zone with the longest origin that contains its name. A Set is
// immutable and safe for concurrent use; a nil *Set holds no zone.
type Set struct {
	byOrigin map[string]*Zone
	// tops holds the last label of every origin but the root: a name
	// whose last label is not in it is in no zone but the root's.
	tops      map[string]bool
	maxLabels int   // labels of the longest origin
	root      *Zone // the zone of origin ".", if any
}

// NewSet returns the set of zones. Two zones with the same origin are an
// error. A nil zone is ignored.
func NewSet(zones ...*Zone) (*Set, error) {
	s := &Set{byOrigin: make(map[string]*Zone, len(zones)), tops: make(map[string]bool)}
	for _, z := range zones {
		if z == nil {
			continue
		}
		if _, dup := s.byOrigin[z.origin]; dup {
			return nil, fmt.Errorf("zone %s is in the set twice", z.origin)
		}
		s.byOrigin[z.origin] = z
		if z.origin == "." {
			s.root = z
		} else {
			top, _ := dns.PrevLabel(z.origin, 1)
			s.tops[z.origin[top:]] = true
		}
		s.maxLabels = max(s.maxLabels, dns.CountLabel(z.origin))
	}
	return s, nil
}

// Len returns the number of zones in s.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byOrigin)
}

// Zones returns the zones of s ordered by origin.
func (s *Set) Zones() []*Zone {
	if s == nil {
		return nil
	}
	out := make([]*Zone, 0, len(s.byOrigin))
	for _, z := range s.byOrigin {
		out = append(out, z)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].origin < out[j].origin })
	return out
}

// Lookup returns the zone with the longest origin at or above name, nil
// when no zone of s contains it. Case is ignored. A name whose last label
// ends no origin costs one map lookup; otherwise the suffixes of name are
// looked up from the one with as many labels as the longest origin down.
// There is no allocation when name is a lower-case FQDN.
func (s *Set) Lookup(name string) *Zone {
	if s == nil || name == "" {
		return nil
	}
	return s.lookup(lowerFQDN(name))
}

// lookup is Lookup for a lower-case FQDN.
func (s *Set) lookup(name string) *Zone {
	if s == nil || len(s.byOrigin) == 0 {
		return nil
	}
	if top, _ := dns.PrevLabel(name, 1); !s.tops[name[top:]] {
		return s.root
	}
	for off, _ := dns.PrevLabel(name, s.maxLabels); ; {
		if z, ok := s.byOrigin[name[off:]]; ok {
			return z
		}
		var end bool
		if off, end = dns.NextLabel(name, off); end {
			return s.root
		}
	}
}

// Answer answers q from the zone of s that contains its name (see Lookup
// and Zone.Answer). It reports false, and returns nil, when q does not
// have exactly one question of class IN or no zone contains the name.
func (s *Set) Answer(q *dns.Msg) (*dns.Msg, bool) {
	if s == nil || len(q.Question) != 1 {
		return nil, false
	}
	return s.answer(q, lowerFQDN(q.Question[0].Name))
}

// answer is Answer for a query whose name, lower-cased, is name.
func (s *Set) answer(q *dns.Msg, name string) (*dns.Msg, bool) {
	if q.Question[0].Qclass != dns.ClassINET {
		return nil, false
	}
	z := s.lookup(name)
	if z == nil {
		return nil, false
	}
	return z.Answer(q), true
}

// lowerFQDN returns name lower-cased and fully qualified, allocating only
// when it is not already.
func lowerFQDN(name string) string {
	name = dnsname.Lower(name)
	if name == "" || name[len(name)-1] != '.' {
		name += "."
	}
	return name
}
