package cache

import (
	"sync"
	"sync/atomic"
	"time"
)

// An entry is one cached answer. Every field but prev and next is set
// before the entry is published in a shard and never changed afterwards, so
// a reader that got the entry from the shard may use them without the lock.
type entry struct {
	key string
	// msg is the packed reply with ID 0, question as first asked, TTLs as
	// stored at time stored (clamped to at most ttl).
	msg []byte
	// ttls holds the offset in msg of every TTL field except OPT's.
	ttls   []uint16
	stored time.Time
	// ttl is how long, in seconds, the entry stays fresh; never 0.
	ttl uint32

	// prev and next link the shard's LRU list; guarded by the shard lock.
	prev, next *entry
}

// age returns the whole seconds e has spent in the cache at now, and
// whether it is still fresh. A clock that went backwards counts as age 0.
func (e *entry) age(now time.Time) (uint32, bool) {
	d := now.Sub(e.stored)
	if d < 0 {
		return 0, true
	}
	s := uint64(d / time.Second)
	if s >= uint64(e.ttl) {
		return 0, false
	}
	return uint32(s), true
}

// A shard is a bounded map of entries with an intrusive LRU list. Its
// counters are written under mu but read without it, hence atomics; they
// live here rather than in one global counter so that cores serving
// different shards never write the same cache line.
type shard struct {
	mu  sync.Mutex
	m   map[string]*entry
	lru entry // sentinel: lru.next is the most recently used entry
	max int

	calls map[string]*call // misses being asked upstream, by key; under mu

	hits, misses, evictions, coalesced atomic.Uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

func (s *shard) init(max int) {
	s.m = make(map[string]*entry)
	s.calls = make(map[string]*call)
	s.lru.next, s.lru.prev = &s.lru, &s.lru
	s.max = max
}

// get returns the fresh entry stored under key and its age, and marks it
// recently used. An entry found expired is removed; get then returns nil.
func (s *shard) get(key []byte, now time.Time) (*entry, uint32) {
	s.mu.Lock()
	e := s.m[string(key)]
	if e == nil {
		s.mu.Unlock()
		return nil, 0
	}
	age, fresh := e.age(now)
	if !fresh {
		s.removeLocked(e)
		s.mu.Unlock()
		return nil, 0
	}
	if s.lru.next != e {
		s.unlink(e)
		s.pushFront(e)
	}
	s.mu.Unlock()
	return e, age
}

// put stores e, replacing any entry with its key, and evicts least
// recently used entries to stay within max.
func (s *shard) put(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.m[e.key]; old != nil {
		s.unlink(old)
	} else {
		for len(s.m) >= s.max && s.lru.prev != &s.lru {
			s.removeLocked(s.lru.prev)
			s.evictions.Add(1)
		}
	}
	s.m[e.key] = e
	s.pushFront(e)
}

// remove deletes e if it is still the entry stored under its key.
func (s *shard) remove(e *entry) {
	s.mu.Lock()
	if s.m[e.key] == e {
		s.removeLocked(e)
	}
	s.mu.Unlock()
}

func (s *shard) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *shard) removeLocked(e *entry) {
	s.unlink(e)
	delete(s.m, e.key)
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
