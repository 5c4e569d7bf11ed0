package cache

// An index finds a shard's entries by key. It is an open-addressing hash
// table with linear probing over two arrays: a tag per slot with 31 bits
// of the entry's hash, those its home slot comes from (0 for an empty
// slot), and the entries. A lookup compares the tag first and reads an
// entry only when it matches, then checks the whole hash and the key, so
// two keys with the same 64-bit hash stay apart. Deletion shifts the
// entries after the hole back (no tombstones), so probe sequences stay as
// short as the load allows; it finds each entry's home slot in its tag,
// without reading the entry (an eviction would otherwise read every
// entry of the run after the hole, each a cache miss in a large cache).
//
// It costs 12 bytes a slot, about 17 an entry at the loads it keeps
// (between 7/16 and 7/8), where a map[string]*entry costs 24 a slot plus
// its bookkeeping (53 bytes an entry measured at a million entries),
// and it holds one pointer per entry for the collector to scan instead
// of two. An index is not safe for concurrent use: the shard's lock
// guards it.
type index struct {
	tags []uint32 // per slot: tagOf the entry's hash, 0 if empty
	ents []*entry // per slot: the entry, nil if empty
	n    int      // entries held
}

// minIndex is the fewest slots a non-empty index has.
const minIndex = 8

// tagOf returns the tag of hash h: never 0. Its low 31 bits are the bits
// of h that home takes the slot from.
func tagOf(h uint64) uint32 { return 1<<31 | uint32(h>>8) }

// home returns h's first slot in a table of mask+1 slots. The low bits
// of h pick the shard (see Cache.locate), so the slot comes from others.
// The slot is the same from h's tag (see homeOf).
func home(h uint64, mask int) int { return int(h>>8) & mask }

// homeOf returns the first slot of the hash whose tag is t in a table of
// mask+1 slots, fewer than 1<<31 (a table of 2^31 slots would be 24 GiB).
func homeOf(t uint32, mask int) int { return int(t) & mask }

// len returns the number of entries held.
func (x *index) len() int { return x.n }

// get returns the entry stored under key, whose hash is h, or nil.
func (x *index) get(h uint64, key []byte) *entry {
	if x.n == 0 {
		return nil
	}
	mask := len(x.tags) - 1
	tag := tagOf(h)
	for i := home(h, mask); ; i = (i + 1) & mask {
		switch x.tags[i] {
		case 0:
			return nil
		case tag:
			if e := x.ents[i]; e.hash == h && e.key() == string(key) {
				return e
			}
		}
	}
}

// add stores e, which must not be held already under its key (see get);
// it grows the table to keep the load at most 7/8.
func (x *index) add(e *entry) {
	if (x.n+1)*8 > len(x.tags)*7 {
		x.resize(max(minIndex, 2*len(x.tags)))
	}
	x.place(e)
	x.n++
}

// place puts e in the first empty slot of its probe sequence.
func (x *index) place(e *entry) {
	mask := len(x.tags) - 1
	i := home(e.hash, mask)
	for x.tags[i] != 0 {
		i = (i + 1) & mask
	}
	x.tags[i] = tagOf(e.hash)
	x.ents[i] = e
}

// remove deletes e itself (not another entry with its key) and reports
// whether it was held.
func (x *index) remove(e *entry) bool {
	if x.n == 0 {
		return false
	}
	mask := len(x.tags) - 1
	i := home(e.hash, mask)
	for ; x.ents[i] != e; i = (i + 1) & mask {
		if x.tags[i] == 0 {
			return false
		}
	}
	// Shift back every entry after the hole whose probe sequence
	// passes through it (Knuth, TAOCP vol. 3, 6.4, algorithm R).
	for j := (i + 1) & mask; x.tags[j] != 0; j = (j + 1) & mask {
		h := homeOf(x.tags[j], mask)
		// Entry j may move to i when its home is not in (i, j],
		// cyclically.
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.tags[i], x.ents[i] = x.tags[j], x.ents[j]
			i = j
		}
	}
	x.tags[i], x.ents[i] = 0, nil
	x.n--
	return true
}

// reserve grows the table so that it holds n entries without growing
// again.
func (x *index) reserve(n int) {
	size := minIndex
	for size*7 < n*8 {
		size *= 2
	}
	if size > len(x.tags) {
		x.resize(size)
	}
}

// resize moves every entry to a table of size slots, a power of two.
func (x *index) resize(size int) {
	old := x.ents
	x.tags = make([]uint32, size)
	x.ents = make([]*entry, size)
	for _, e := range old {
		if e != nil {
			x.place(e)
		}
	}
}
