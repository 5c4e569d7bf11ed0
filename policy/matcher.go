package policy

import (
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
)

// matcher finds the first rule (by priority) whose every dimension
// matches. Each dimension is an index (a prefix tree for networks, a
// suffix map for domains, a byte trie for name prefixes, maps for the
// rest) that gives, in one lookup, the set of rules the query matches on
// that dimension: the rules naming the value found and those naming a
// less specific one that contains it. The sets are bitsets over the rules
// in priority order, computed at compile time. Rules that constrain the same dimensions are next to
// each other in that order (a mask group); a decision walks the groups
// (see walk) and, in a group whose every dimension the query's values
// are named on, ANDs those dimensions' sets over the group's words: the
// first bit left is the winner. A memo of the winner by the sets found
// spares most decisions the walk (see first).
type matcher struct {
	words    int      // uint64 words per set
	bits     []uint64 // the sets, words apiece
	clientID map[string]int32
	source   Table[int32]
	ecs      Table[int32]
	prefix   trie
	// suffix has every listed domain with its set, and every domain
	// above a listed one with -1, so that a lookup walking a name from
	// the root down stops at the first label no rule goes below.
	suffix       map[string]int32
	suffixFilter bloom // suffixHash of every key of suffix
	// suffixTails has bit tailIndex of every key's last two bytes
	// before its final dot: most names are under no key's top-level
	// domain, which it tells without walking them.
	suffixTails *[1 << 16 / 64]uint64
	// rootSuffix is the set of the root domain (a rule listing "."), -1
	// for none.
	rootSuffix int32
	// qtype is indexed by query type: each listed type's set, -1 for
	// the rest; it ends at the highest listed type.
	qtype    []int32
	listener []listenerSet    // a handful at most: scanned
	tags     map[string]int32 // rules naming the tag
	groups   []maskGroup
	// used has bit d for each dimension some rule names. memo is nil
	// for a matcher of one group, which the walk decides at once.
	used uint16
	memo *[memoSlots]atomic.Pointer[memoEntry]
}

type listenerSet struct {
	name string
	set  int32
}

func (m *matcher) set(i int32) []uint64 { return m.bits[int(i)*m.words : (int(i)+1)*m.words] }

// maxTagSets is how many matched tags Decide tracks without allocating.
const maxTagSets = 8

// A maskGroup is a run of rules, in priority order, that constrain the
// same dimensions: rules lo up to hi (excluded) constrain dims, cheapest
// lookup first.
type maskGroup struct {
	lo, hi int32
	need   uint16 // bit d for each of dims
	n      uint8  // dimensions in dims
	dims   [nDimsAll]int8
}

// dimList returns g's dimensions, cheapest lookup first. They are kept in
// the group, not behind a slice, so that a decision walking the groups
// reads a few contiguous cache lines.
func (g *maskGroup) dimList() []int8 { return g.dims[:g.n] }

// dimCost orders the dimensions by what their lookup costs: a missing
// client id or ECS option costs nothing, the listener and qtype a short
// scan or a small map, names a walk, addresses a prefix tree.
var dimCost = [nDimsAll]int{dimClientID: 0, dimECS: 1, dimListener: 2, dimQType: 3, dimTags: 4, dimPrefix: 5, dimSuffix: 6, dimSource: 7}

// first returns the priority index of the first rule matching in, -1 for
// none. A matcher of several mask groups looks up every dimension its
// rules use and asks its memo (see memo) for the rule that signature
// chose before; on a miss, and for a matcher of one group, it walks the
// groups (see walk). pre, when not nil, holds the lookups of in's
// connection (see Conn), which are not made again.
func (m *matcher) first(in *Input, pre *connLookups) int {
	if m == nil || m.words == 0 {
		return -1
	}
	var q lookups
	if pre != nil {
		q.looked, q.wild, q.sets = pre.looked, pre.wild, pre.sets
	}
	return m.decide(&q, in)
}

// decide is first for a query whose lookups so far q holds.
func (m *matcher) decide(q *lookups, in *Input) int {
	if m.memo == nil {
		return q.walk(m, in)
	}
	m.signature(q, in)
	if q.nTags > 1 {
		// The signature holds one tag set: a query with several walks.
		return q.walk(m, in)
	}
	h := q.sets.hash()
	ways := m.memo[h>>(64-memoBits)&^1:][:2]
	e0, e1 := ways[0].Load(), ways[1].Load()
	switch {
	case e0 != nil && e0.key.equal(&q.sets):
		return int(e0.rule)
	case e1 != nil && e1.key.equal(&q.sets):
		return int(e1.rule)
	}
	r := q.walk(m, in)
	e := &memoEntry{key: q.sets, rule: int32(r)}
	switch {
	case e0 == nil:
		ways[0].Store(e)
	case e1 == nil:
		ways[1].Store(e)
	default:
		ways[h&1].Store(e)
	}
	return r
}

// walk returns the first rule matching in, -1 for none, looking up
// dimensions not in q yet. It walks the mask groups in priority order. A group whose rules
// constrain a dimension on which the query's value is named by no rule
// cannot match, which the lookup of that dimension tells at once; so
// most groups fail on their cheapest dimension,
// and a dimension is looked up only when a group needs it, at most once.
// A group whose every dimension found a value ANDs those dimensions'
// sets over its own words; the first bit left is the winner.
func (q *lookups) walk(m *matcher, in *Input) int {
	for gi := range m.groups {
		g := &m.groups[gi]
		if g.need == 0 {
			return int(g.lo) // a rule with no match: every query
		}
		if g.need&q.wild != 0 {
			continue // a dimension looked up already names nothing
		}
		if g.need&^q.looked != 0 && !q.namedAll(m, in, g) {
			continue
		}
		if r := q.firstIn(m, g); r >= 0 {
			return r
		}
	}
	return -1
}

// lookups holds one decision's lookups, each made when first needed.
type lookups struct {
	looked uint16    // bit d: dimension d was looked up
	wild   uint16    // bit d: the value is named by no rule
	sets   signature // each dimension's set, but tags
	// tags are the sets of the query's tags some rule names: the first
	// maxTagSets in tagSets, the rest (rare) in moreTags.
	tagSets  [maxTagSets]int32
	nTags    int
	moreTags []int32
}

// namedAll looks up g's dimensions not looked up yet, cheapest first,
// and reports whether some rule names the query's value on each (or one
// containing it); it stops at the first that none does.
func (q *lookups) namedAll(m *matcher, in *Input, g *maskGroup) bool {
	for _, d := range g.dimList() {
		if q.looked&(1<<d) != 0 {
			continue
		}
		q.looked |= 1 << d
		set, ok := m.lookup(q, in, int(d))
		if int(d) == dimTags {
			set = q.tagSets[0] // as signature has it
		}
		q.put(int(d), set, ok)
		if !ok {
			return false
		}
	}
	return true
}

// lookup returns the set of the query's value on dimension d, false when
// no rule names it. For tags it gathers the sets of the query's tags in
// q.tags instead, true when there is one.
func (m *matcher) lookup(q *lookups, in *Input, d int) (int32, bool) {
	switch d {
	case dimClientID:
		if in.ClientID == "" {
			return 0, false
		}
		i, ok := m.clientID[in.ClientID]
		return i, ok
	case dimSource:
		return m.source.LookupAddr(in.Source)
	case dimECS:
		if !in.ECS.IsValid() {
			return 0, false
		}
		return m.ecs.LookupPrefix(in.ECS)
	case dimTags:
		for _, t := range in.Tags {
			if i, ok := m.tags[t]; ok {
				if q.nTags < maxTagSets {
					q.tagSets[q.nTags] = i
				} else {
					q.moreTags = append(q.moreTags, i)
				}
				q.nTags++
			}
		}
		return 0, q.nTags > 0
	case dimPrefix:
		i := m.prefix.lookup(in.QName, -1)
		return i, i >= 0
	case dimSuffix:
		i := m.lookupSuffix(in.QName)
		return i, i >= 0
	case dimQType:
		if int(in.QType) < len(m.qtype) {
			i := m.qtype[in.QType]
			return i, i >= 0
		}
	case dimListener:
		for _, l := range m.listener {
			if l.name == in.Listener {
				return l.set, true
			}
		}
	}
	return 0, false
}

// lookAt looks up the query's values on the dimensions of miss, which
// are the query's own (ECS, qtype, tags, name prefix and suffix),
// cheapest first, until one is named by no rule: it returns the
// dimensions it looked up and those found named (or a value containing
// the query's), without keeping their sets.
func (m *matcher) lookAt(in *Input, miss uint16) (looked, named uint16) {
	if miss&(1<<dimECS) != 0 {
		looked |= 1 << dimECS
		if !in.ECS.IsValid() {
			return
		}
		if _, ok := m.ecs.LookupPrefix(in.ECS); !ok {
			return
		}
		named |= 1 << dimECS
	}
	if miss&(1<<dimQType) != 0 {
		looked |= 1 << dimQType
		if int(in.QType) >= len(m.qtype) || m.qtype[in.QType] < 0 {
			return
		}
		named |= 1 << dimQType
	}
	if miss&(1<<dimTags) != 0 {
		looked |= 1 << dimTags
		if !m.namesTag(in.Tags) {
			return
		}
		named |= 1 << dimTags
	}
	if miss&(1<<dimPrefix) != 0 {
		looked |= 1 << dimPrefix
		if m.prefix.lookup(in.QName, -1) < 0 {
			return
		}
		named |= 1 << dimPrefix
	}
	if miss&(1<<dimSuffix) != 0 {
		looked |= 1 << dimSuffix
		if m.lookupSuffix(in.QName) < 0 {
			return
		}
		named |= 1 << dimSuffix
	}
	return
}

// namesTag reports whether some rule names one of tags.
func (m *matcher) namesTag(tags []string) bool {
	for _, t := range tags {
		if _, ok := m.tags[t]; ok {
			return true
		}
	}
	return false
}

// firstIn ANDs the sets of g's dimensions over g's rules and returns the
// first rule left, -1 for none.
func (q *lookups) firstIn(m *matcher, g *maskGroup) int {
	lo, hi := int(g.lo)/64, int(g.hi-1)/64
	for w := lo; w <= hi; w++ {
		x := ^uint64(0)
		if w == lo {
			x <<= uint(g.lo % 64)
		}
		if w == hi && g.hi%64 != 0 {
			x &= 1<<uint(g.hi%64) - 1
		}
		for _, d := range g.dimList() {
			if x == 0 {
				break
			}
			if int(d) == dimTags {
				var t uint64
				for _, i := range q.tagSets[:min(q.nTags, maxTagSets)] {
					t |= m.bits[int(i)*m.words+w]
				}
				for _, i := range q.moreTags {
					t |= m.bits[int(i)*m.words+w]
				}
				x &= t
				continue
			}
			x &= m.bits[int(q.sets[d])*m.words+w]
		}
		if x != 0 {
			return w*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// builder makes the sets of a matcher.
type builder struct{ m *matcher }

func (b *builder) newSet() int32 {
	i := int32(len(b.m.bits) / b.m.words)
	b.m.bits = append(b.m.bits, make([]uint64, b.m.words)...)
	return i
}

func (b *builder) add(set int32, rule int) { b.m.set(set)[rule/64] |= 1 << (rule % 64) }

// valueSet returns a new set of the rules in rs. It holds no rule that
// leaves the dimension open: a decision ANDs a dimension's set only over
// the rules that constrain it (a mask group).
func (b *builder) valueSet(rs []int) int32 {
	s := b.newSet()
	for _, r := range rs {
		b.add(s, r)
	}
	return s
}

// buildMatcher compiles rules, sorted by priority.
func buildMatcher(rules []*rule) *matcher {
	m := &matcher{words: (len(rules) + 63) / 64}
	if m == nil || m.words == 0 {
		return m
	}
	b := &builder{m: m}
	var (
		ids      = make(map[string][]int)
		srcs     = make(map[netip.Prefix][]int)
		ecss     = make(map[netip.Prefix][]int)
		prefixes = make(map[string][]int)
		suffixes = make(map[string][]int)
		qtypes   = make(map[uint16][]int)
		kinds    = make(map[string][]int)
		tags     = make(map[string][]int)
	)
	for i, r := range rules {
		index(ids, r.m.clientID, i)
		index(srcs, r.m.source, i)
		index(ecss, r.m.ecs, i)
		index(prefixes, r.m.prefix, i)
		index(suffixes, r.m.suffix, i)
		index(qtypes, r.m.qtype, i)
		index(kinds, r.m.listener, i)
		index(tags, r.m.tags, i)
	}
	m.clientID = flatSets(b, ids)
	for t, rs := range qtypes {
		for int(t) >= len(m.qtype) {
			m.qtype = append(m.qtype, -1)
		}
		m.qtype[t] = b.valueSet(rs)
	}
	for v, rs := range kinds {
		m.listener = append(m.listener, listenerSet{v, b.valueSet(rs)})
	}
	m.tags = flatSets(b, tags)
	for lo := 0; lo < len(rules); {
		hi := lo + 1
		for hi < len(rules) && rules[hi].mask == rules[lo].mask {
			hi++
		}
		g := maskGroup{lo: int32(lo), hi: int32(hi)}
		for d := range nDimsAll {
			if rules[lo].mask&(1<<(nDimsAll-1-d)) != 0 {
				g.dims[g.n] = int8(d)
				g.n++
			}
		}
		slices.SortFunc(g.dimList(), func(a, b int8) int { return dimCost[a] - dimCost[b] })
		for _, d := range g.dimList() {
			g.need |= 1 << d
		}
		m.groups = append(m.groups, g)
		m.used |= g.need
		lo = hi
	}
	if len(m.groups) > 1 {
		m.memo = new([memoSlots]atomic.Pointer[memoEntry])
	}
	b.nets(&m.source, srcs)
	b.nets(&m.ecs, ecss)

	// A suffix's set has the rules of every listed domain above it.
	m.suffix = make(map[string]int32, len(suffixes))
	for v := range suffixes {
		s := b.valueSet(nil)
		for i := 0; i < len(v); i++ {
			if i == 0 || v[i-1] == '.' {
				for _, r := range suffixes[v[i:]] {
					b.add(s, r)
				}
			}
		}
		if v != "." {
			for _, r := range suffixes["."] {
				b.add(s, r)
			}
		}
		m.suffix[v] = s
	}
	m.rootSuffix = -1
	if s, ok := m.suffix["."]; ok {
		m.rootSuffix = s
	}
	for v := range suffixes {
		for i := 1; i < len(v); i++ {
			if v[i-1] == '.' {
				if _, ok := m.suffix[v[i:]]; !ok {
					m.suffix[v[i:]] = -1
				}
			}
		}
	}
	if len(m.suffix) > 0 {
		m.suffixTails = new([1 << 16 / 64]uint64)
	}
	for v := range m.suffix {
		t := tailIndex(strings.TrimSuffix(v, "."))
		m.suffixTails[t/64] |= 1 << (t % 64)
	}
	for v := range m.suffix {
		m.suffixFilter.add(suffixHash(v))
	}
	// A prefix's set has the rules of every listed prefix of it.
	for v := range prefixes {
		s := b.valueSet(nil)
		for n := 1; n <= len(v); n++ {
			for _, r := range prefixes[v[:n]] {
				b.add(s, r)
			}
		}
		n := m.prefix.insert(v)
		m.prefix.nodes[n].set = s
	}
	return m
}

// flatSets makes the sets of a dimension without hierarchy.
func flatSets[K comparable](b *builder, vals map[K][]int) map[K]int32 {
	out := make(map[K]int32, len(vals))
	for v, rs := range vals {
		out[v] = b.valueSet(rs)
	}
	return out
}

// nets fills t with a set per listed network: the rules of every listed
// network containing it.
func (b *builder) nets(t *Table[int32], vals map[netip.Prefix][]int) {
	var all Table[[]int]
	for p, rs := range vals {
		all.AddNetwork(p, rs)
	}
	for p := range vals {
		s := b.valueSet(nil)
		for _, rs := range all.nets.Supernets(p) {
			for _, r := range rs {
				b.add(s, r)
			}
		}
		t.AddNetwork(p, s)
	}
}

// index adds rule i under each of its values vs.
func index[K comparable](m map[K][]int, vs []K, i int) {
	for _, v := range vs {
		m[v] = append(m[v], i)
	}
}
