package policy

// memoSlots is the size of a matcher's memo.
const (
	memoBits  = 9
	memoSlots = 1 << memoBits
)

// The memo maps a query's signature, the set each dimension's lookup
// found (-1 where the query's value is named by no rule, the tag set
// when one of its tags is named), to the rule the walk chose for it. The
// winner depends on nothing else, and a policy has few signatures (a
// dimension has one set per value some rule names), so that a decision
// costs its lookups and one probe whatever the number of groups. It is
// two-way set-associative; entries are immutable, replaced whole.
type memoEntry struct {
	key  signature
	rule int32
}

type signature [nDimsAll]int32

// equal is written for eight dimensions.
var _ = [1]struct{}{}[nDimsAll-8]

// equal compares element by element, which the compiler keeps inline
// (an array compare of this size calls memequal).
func (s *signature) equal(o *signature) bool {
	return s[0] == o[0] && s[1] == o[1] && s[2] == o[2] && s[3] == o[3] &&
		s[4] == o[4] && s[5] == o[5] && s[6] == o[6] && s[7] == o[7]
}

// hash is a multiplicative hash of s's words: its top bits pick two
// neighbouring slots of the memo (two ways, so that two signatures
// whose slots collide do not take turns), its low bit the way a new
// entry replaces when both are taken.
func (s *signature) hash() uint64 {
	w := func(i int) uint64 { return uint64(uint32(s[i])) | uint64(uint32(s[i+1]))<<32 }
	h := w(0) ^ w(2)*0xff51afd7ed558ccd ^ w(4)*0xc4ceb9fe1a85ec53 ^ w(6)*0x9e3779b97f4a7c15
	h *= 0xd6e8feb86659fd93
	return h ^ h>>32&1
}

// signature looks up every dimension some rule of m names, so that the
// walk looks up none: q.sets holds each one's set, -1 where no rule names
// the query's value, and, for tags, the one tag set when a single tag of
// the query is named. Dimensions q has looked up already (a connection's,
// see Conn) are not looked up again.
func (m *matcher) signature(q *lookups, in *Input) {
	u := m.used &^ q.looked
	q.looked |= u
	if u&(1<<dimClientID) != 0 {
		s, ok := int32(0), false
		if in.ClientID != "" {
			s, ok = m.clientID[in.ClientID]
		}
		q.put(dimClientID, s, ok)
	}
	if u&(1<<dimSource) != 0 {
		s, ok := m.source.LookupAddr(in.Source)
		q.put(dimSource, s, ok)
	}
	if u&(1<<dimECS) != 0 {
		s, ok := int32(0), false
		if in.ECS.IsValid() {
			s, ok = m.ecs.LookupPrefix(in.ECS)
		}
		q.put(dimECS, s, ok)
	}
	if u&(1<<dimTags) != 0 {
		_, ok := m.lookup(q, in, dimTags)
		q.put(dimTags, q.tagSets[0], ok)
	}
	if u&(1<<dimPrefix) != 0 {
		s := m.prefix.lookup(in.QName, -1)
		q.put(dimPrefix, s, s >= 0)
	}
	if u&(1<<dimSuffix) != 0 {
		s := m.lookupSuffix(in.QName)
		q.put(dimSuffix, s, s >= 0)
	}
	if u&(1<<dimQType) != 0 {
		s := int32(-1)
		if int(in.QType) < len(m.qtype) {
			s = m.qtype[in.QType]
		}
		q.put(dimQType, s, s >= 0)
	}
	if u&(1<<dimListener) != 0 {
		s, ok := int32(0), false
		for _, l := range m.listener {
			if l.name == in.Listener {
				s, ok = l.set, true
				break
			}
		}
		q.put(dimListener, s, ok)
	}
}

// put records dimension d's lookup.
func (q *lookups) put(d int, s int32, ok bool) {
	if !ok {
		s = -1
		q.wild |= 1 << d
	}
	q.sets[d] = s
}
