package policy

// The name indexes: the suffix map walked label by label behind its
// filters, and the byte trie of name prefixes.

// lookupSuffix returns the set of the longest domain in the suffix map
// that name is or is below, -1 for none. It walks name's domains from the root down
// ("example.", "www.example." ...) and stops at the first that is
// neither listed nor above a listed domain, so that a name below no rule
// costs one lookup. The domains' hashes, taken from the last byte
// backwards, grow with the walk; the filter turns away most domains not
// in the map before the map is asked. ASCII letters compare without
// regard to case.
func (m *matcher) lookupSuffix(name string) int32 {
	end := len(name)
	if m.suffixTails == nil || end == 0 {
		return -1 // no name (a query without a question) is below no domain
	}
	best := m.rootSuffix
	h := uint64(fnvOffset)
	if name[end-1] == '.' {
		end--
		h = fnvByte(h, '.')
	}
	if t := tailIndex(name[:end]); m.suffixTails[t/64]&(1<<(t%64)) == 0 {
		return best
	}
	upper := false // name[i:] has an upper-case letter
	for i := end - 1; i >= 0; i-- {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		h = fnvByte(h, c)
		if i > 0 && name[i-1] != '.' {
			continue
		}
		if !m.suffixFilter.has(h) {
			break
		}
		var (
			s  int32
			ok bool
		)
		if upper {
			s, ok = m.suffixFolded(name[i:])
		} else {
			s, ok = m.suffix[name[i:]]
		}
		if !ok {
			break
		}
		if s >= 0 {
			best = s
		}
	}
	return best
}

// tailIndex returns the index of name's last two bytes (without its
// final dot) in lower case, the first a dot when it has one byte.
func tailIndex(name string) uint {
	a, b := byte('.'), byte('.')
	if n := len(name); n > 0 {
		a = lower(name[n-1])
		if n > 1 {
			b = lower(name[n-2])
		}
	}
	return uint(b)<<8 | uint(a)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c
}

// suffixFolded looks up domain, which has upper-case letters, in the
// suffix map in lower case. It is apart from lookupSuffix so that the
// buffer is on the stack only for such names.
func (m *matcher) suffixFolded(domain string) (int32, bool) {
	var buf [255]byte
	s, ok := m.suffix[string(lowerInto(buf[:0], domain))]
	return s, ok
}

// lowerInto appends s to b with ASCII upper case folded to lower case,
// as DNS compares names (RFC 4343 §3).
func lowerInto(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// suffixHash is the hash lookupSuffix has for domain: FNV-1a over its
// bytes from the last to the first.
func suffixHash(domain string) uint64 {
	h := uint64(fnvOffset)
	for i := len(domain) - 1; i >= 0; i-- {
		h = fnvByte(h, domain[i])
	}
	return h
}

// bloom is a one-hash Bloom filter of 4,096 bits.
type bloom [64]uint64

// add and has use the hash's top 12 bits, which a multiplicative hash
// mixes best.
func (b *bloom) add(h uint64) { b[h>>58] |= 1 << (h >> 52 & 63) }

func (b *bloom) has(h uint64) bool { return b[h>>58]&(1<<(h>>52&63)) != 0 }

// trie is a byte trie of name prefixes; node 0 is the root.
type trie struct{ nodes []trieNode }

type trieNode struct {
	keys []byte
	kids []int32
	set  int32 // -1 unless a prefix ends here
}

func (t *trie) child(n int32, b byte) int32 {
	nd := &t.nodes[n]
	for i, k := range nd.keys {
		if k == b {
			return nd.kids[i]
		}
	}
	return -1
}

// insert adds prefix and returns its node.
func (t *trie) insert(prefix string) int32 {
	if len(t.nodes) == 0 {
		t.nodes = append(t.nodes, trieNode{set: -1})
	}
	n := int32(0)
	for i := 0; i < len(prefix); i++ {
		c := t.child(n, prefix[i])
		if c < 0 {
			c = int32(len(t.nodes))
			t.nodes = append(t.nodes, trieNode{set: -1})
			t.nodes[n].keys = append(t.nodes[n].keys, prefix[i])
			t.nodes[n].kids = append(t.nodes[n].kids, c)
		}
		n = c
	}
	return n
}

// lookup returns the set of the longest prefix of name in the trie, or
// wild, comparing ASCII letters without regard to case.
func (t *trie) lookup(name string, wild int32) int32 {
	best := wild
	if len(t.nodes) == 0 {
		return best
	}
	n := int32(0)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if n = t.child(n, c); n < 0 {
			break
		}
		if s := t.nodes[n].set; s >= 0 {
			best = s
		}
	}
	return best
}
