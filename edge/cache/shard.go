package cache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// An entry is one cached answer. Every field but prev, next, tmplSize and
// the atomics is set before the entry is published in a shard and never
// changed afterwards, so a reader that got the entry from the shard may
// use them without the lock.
//
// An entry is laid out for a cache of a million of them: 80 bytes (one
// size class) and one pointer-free allocation beside it holding the TTL
// offsets, the key and the message (see newEntry). Slices and strings
// are made from data and the lengths when asked for (key, msg, ttls), so
// the entry keeps one pointer to them rather than three headers.
type entry struct {
	// data is the start of the entry's bytes: nttl TTL offsets (uint16),
	// then the key (klen bytes), then the message (mlen bytes); nil when
	// all three are empty.
	data             unsafe.Pointer
	nttl, klen, mlen uint16
	// authentic tells whether the answer was authentic when stored (see
	// authenticity): a hit sets AD from it, per query, never from the
	// stored header. dnssec is the validation verdict it was stored
	// with, DNSSECNone when nothing validated it.
	authentic bool
	dnssec    pipeline.DNSSECVerdict

	// stored is when the entry was made, in Unix nanoseconds.
	stored int64
	// ttl is how long, in seconds, the entry stays fresh; never 0.
	ttl uint32
	// stale is how long, in seconds after ttl, the entry may still be
	// served stale (RFC 8767); 0 when it may not.
	stale uint32

	// hits counts fresh answers served from the entry (for prefetch).
	hits atomic.Uint32
	// tmplSize is what tmpl counts against the byte bound, 0 while
	// none was kept; guarded by the shard lock.
	tmplSize int32
	// failed is when a refresh of the entry last failed, in Unix
	// nanoseconds; 0 if none did.
	failed atomic.Int64
	// tmpl is the answer unpacked for the age of the last hit that
	// rebuilt it; nil until the first hit (template.go). A cached
	// failure has no message: its tmpl holds the failure from the
	// start and is never replaced (see failure).
	tmpl atomic.Pointer[template]

	// hash is the key's hash (see Cache.locate); set by shard.put.
	hash uint64
	// prev and next link the shard's LRU list; guarded by the shard lock.
	prev, next *entry
}

// entryOverhead estimates what an entry costs beyond its key, message and
// offsets: the struct itself and its share of the shard's index (see
// index: 12 bytes a slot at a load of 7/16 to 7/8, 14 to 27 an entry).
const entryOverhead = int64(unsafe.Sizeof(entry{})) + 20

// maxKeyLen is the longest key an entry holds; longer ones (a route or
// tags of many kilobytes) are not cached.
const maxKeyLen = 0xFFFF

// newEntry returns an entry for the packed message msg stored under key,
// with the TTL offsets offs, or nil when the key is longer than
// maxKeyLen. Offsets, key and message share one allocation without
// pointers (a million entries are a million small objects fewer for the
// collector to track and nothing in them for it to scan, and no
// size-class rounding per part): the offsets first, since they need
// uint16 alignment, then the key's and message's bytes. Nothing writes
// into them afterwards. msg and the offsets fit in 16 bits by
// construction (a DNS message is at most 65535 bytes).
func newEntry(key, msg []byte, offs []uint16, stored time.Time, ttl, stale uint32) *entry {
	if len(key) > maxKeyLen {
		return nil
	}
	e := &entry{
		nttl:   uint16(len(offs)),
		klen:   uint16(len(key)),
		mlen:   uint16(len(msg)),
		stored: stored.UnixNano(),
		ttl:    ttl,
		stale:  stale,
	}
	n := e.words()
	if n == 0 {
		return e
	}
	arena := make([]uint16, n)
	copy(arena, offs)
	if len(key)+len(msg) > 0 {
		b := unsafe.Slice((*byte)(unsafe.Pointer(&arena[len(offs)])), len(key)+len(msg))
		copy(b, key)
		copy(b[len(key):], msg)
	}
	e.data = unsafe.Pointer(&arena[0])
	return e
}

// words returns the length of e's data in uint16 words.
func (e *entry) words() int {
	return int(e.nttl) + (int(e.klen)+int(e.mlen)+1)/2
}

// size is what e counts against the cache's byte bound, its template
// aside.
func (e *entry) size() int64 {
	return int64(2*e.words()) + entryOverhead
}

// ttls returns the offset in msg of every TTL field except OPT's.
func (e *entry) ttls() []uint16 {
	if e.nttl == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(e.data), e.nttl)
}

// key returns the key e is stored under.
func (e *entry) key() string {
	if e.klen == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(e.data, 2*int(e.nttl))), e.klen)
}

// keyBytes returns the key as bytes; they must not be modified.
func (e *entry) keyBytes() []byte {
	if e.klen == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(e.data, 2*int(e.nttl))), e.klen)
}

// msg returns the packed reply with ID 0, question as first asked, TTLs
// as stored at time stored (clamped to at most ttl); nil for a cached
// failure. It has no spare capacity.
func (e *entry) msg() []byte {
	if e.mlen == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(e.data, 2*int(e.nttl)+int(e.klen))), e.mlen)
}

// failure returns the failure a cached failure holds (see
// Cache.insertFailure); nil for an answer.
func (e *entry) failure() error {
	if t := e.tmpl.Load(); t != nil {
		return t.fail
	}
	return nil
}

// state is what an entry is good for at some instant.
type state uint8

const (
	fresh state = iota + 1 // within its TTL
	stale                  // past its TTL, within its stale window
)

// age returns the whole seconds e has spent in the cache at now, and
// whether it is fresh, stale or gone (0). A clock that went backwards
// counts as age 0.
func (e *entry) age(now time.Time) (uint32, state) {
	d := time.Duration(now.UnixNano() - e.stored)
	if d < 0 {
		return 0, fresh
	}
	s := uint64(d / time.Second)
	switch {
	case s < uint64(e.ttl):
		return uint32(s), fresh
	case s < uint64(e.ttl)+uint64(e.stale):
		return uint32(s), stale
	}
	return 0, 0
}

// A shard is a bounded map of entries with an intrusive LRU list. Its
// counters are written under mu but read without it, hence atomics; they
// live here rather than in one global counter so that cores serving
// different shards never write the same cache line.
type shard struct {
	mu   sync.Mutex
	idx  index
	seed maphash.Seed // the cache's: keys hash the same in every shard
	lru  entry        // sentinel: lru.next is the most recently used entry
	max  int
	// maxBytes bounds bytes, the sum of the entries' sizes.
	maxBytes int64

	calls map[string]*call // misses and refreshes in flight, by key; under mu

	bytes atomic.Int64

	hits, misses, evictions, coalesced, staleServed atomic.Uint64
	prefetches, refreshFailures                     atomic.Uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

func (s *shard) init(max int, maxBytes int64, seed maphash.Seed) {
	s.seed = seed
	s.calls = make(map[string]*call)
	s.lru.next, s.lru.prev = &s.lru, &s.lru
	s.max = max
	s.maxBytes = maxBytes
}

// get returns the entry stored under key, whose hash is h (see
// Cache.locate), its age and its state, and marks it recently used. An
// entry past its stale window is removed; get then returns nil.
func (s *shard) get(h uint64, key []byte, now time.Time) (*entry, uint32, state) {
	s.mu.Lock()
	e := s.idx.get(h, key)
	if e == nil {
		s.mu.Unlock()
		return nil, 0, 0
	}
	age, st := e.age(now)
	if st == 0 {
		s.removeLocked(e)
		s.mu.Unlock()
		return nil, 0, 0
	}
	if s.lru.next != e {
		s.unlink(e)
		s.pushFront(e)
	}
	s.mu.Unlock()
	return e, age, st
}

// put stores e, replacing any entry with its key, and evicts least
// recently used entries to stay within both bounds. An entry larger than
// the shard's whole byte budget is not stored.
func (s *shard) put(e *entry) {
	size := e.size()
	if size > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.hash = maphash.String(s.seed, e.key())
	if old := s.idx.get(e.hash, e.keyBytes()); old != nil {
		s.removeLocked(old)
	}
	for (s.idx.len() >= s.max || s.bytes.Load()+size > s.maxBytes) && s.lru.prev != &s.lru {
		s.removeLocked(s.lru.prev)
		s.evictions.Add(1)
	}
	s.idx.add(e)
	s.bytes.Add(size)
	s.pushFront(e)
}

// remove deletes e if it is still the entry stored under its key.
func (s *shard) remove(e *entry) {
	s.mu.Lock()
	if s.holds(e) {
		s.removeLocked(e)
	}
	s.mu.Unlock()
}

func (s *shard) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.len()
}

// holds reports whether e is stored in s; s.mu must be held. e may
// belong to another shard (an ECS-scoped entry answers a query whose
// calls are kept in the shard of its key).
func (s *shard) holds(e *entry) bool {
	return s.idx.get(e.hash, e.keyBytes()) == e
}

// storedUnder returns the entry stored under key in s, nil if none; s.mu
// must be held.
func (s *shard) storedUnder(key string) *entry {
	return s.idx.get(maphash.String(s.seed, key), unsafe.Slice(unsafe.StringData(key), len(key)))
}

func (s *shard) removeLocked(e *entry) {
	s.unlink(e)
	s.idx.remove(e)
	s.bytes.Add(-e.size() - int64(e.tmplSize))
}

func (s *shard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *entry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}
