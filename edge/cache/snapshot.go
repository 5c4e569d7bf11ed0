package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"time"
	"unsafe"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// A Record is one cached answer in a form another process can take over
// (see Records and Restore): its key and packed message as stored, and
// its times as durations before the moment it was read, so they mean the
// same on another clock.
type Record struct {
	// Key is the entry's key: question, flags, ECS scope, tags and route
	// (see appendKey). Msg is the packed answer with ID 0 and TTLs as
	// stored, not yet aged.
	Key, Msg []byte
	// Age is how long the entry had been cached. TTL and Stale are its
	// lifetime and stale window, in seconds.
	Age        time.Duration
	TTL, Stale uint32
	Authentic  bool
	DNSSEC     pipeline.DNSSECVerdict
	// Hits counts fresh answers served from it (for prefetch).
	Hits uint32
	// FailedAgo is how long ago a refresh of it last failed; below zero
	// when none did.
	FailedAgo time.Duration
}

// Records returns up to max entries that are fresh or may still be
// served stale, the most valuable first: the shards' most recently used
// entries, taken in turn from every shard (entries spread over shards by
// hash, so this approximates the cache-wide order). The records share
// the entries' memory: they are read-only. Cached failures are
// left out: their error belongs to this process. Each shard's lock is held
// only to list its entries; a max of 0 or less means none.
func (c *Cache) Records(max int) []Record {
	if max <= 0 {
		return nil
	}
	now := c.now()
	lists := make([][]*entry, len(c.shards))
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		l := make([]*entry, 0, min(s.idx.len(), max))
		for e := s.lru.next; e != &s.lru && len(l) < max; e = e.next {
			if e.failure() == nil {
				l = append(l, e)
			}
		}
		s.mu.Unlock()
		lists[i] = l
	}
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	out := make([]Record, 0, min(total, max))
	for round := 0; len(out) < max; round++ {
		took := false
		for _, l := range lists {
			if round >= len(l) || len(out) >= max {
				continue
			}
			took = true
			e := l[round]
			if _, st := e.age(now); st == 0 {
				continue
			}
			failed := time.Duration(-1)
			if f := e.failed.Load(); f != 0 {
				failed = time.Duration(max64(now.UnixNano()-f, 0))
			}
			out = append(out, Record{
				Key: unsafe.Slice(unsafe.StringData(e.key()), e.klen), Msg: e.msg(),
				Age: time.Duration(max64(now.UnixNano()-e.stored, 0)),
				TTL: e.ttl, Stale: e.stale,
				Authentic: e.authentic, DNSSEC: e.dnssec,
				Hits: e.hits.Load(), FailedAgo: failed,
			})
		}
		if !took {
			break
		}
	}
	return out
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Errors of CheckRecord.
var (
	errRecordKey = errors.New("malformed cache key")
	errRecordMsg = errors.New("malformed cached message")
)

// CheckRecord reports what is wrong with r, nil when Restore may take it:
// a well-formed key, a message that answers the key's question and whose
// records can be walked, a TTL within RFC 2181 §8, a known DNSSEC verdict.
func CheckRecord(r *Record) error {
	nameLen, err := checkKey(r.Key)
	if err != nil {
		return err
	}
	offs, err := ttlOffsets(r.Msg, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errRecordMsg, err)
	}
	if !stableNames(r.Msg, offs) {
		return fmt.Errorf("%w: a name reads bytes a cached answer rewrites", errRecordMsg)
	}
	if binary.BigEndian.Uint16(r.Msg) != 0 || !sameQuestion(r.Msg, r.Key, nameLen) {
		return fmt.Errorf("%w: not the answer to its key's question", errRecordMsg)
	}
	switch {
	case r.TTL == 0 || r.TTL > 1<<31-1 || r.Stale > 1<<31-1:
		return errors.New("cache record: lifetime out of range")
	case r.Age < 0:
		return errors.New("cache record: negative age")
	case r.DNSSEC > pipeline.DNSSECIndeterminate:
		return fmt.Errorf("cache record: unknown DNSSEC verdict %d", r.DNSSEC)
	}
	return nil
}

// checkKey checks the layout appendKey and rescope write and returns the
// length of the key's wire name.
func checkKey(key []byte) (int, error) {
	off := 0
	for {
		if off >= len(key) {
			return 0, errRecordKey
		}
		n := int(key[off])
		if n > 63 {
			return 0, errRecordKey
		}
		for _, c := range key[off+1 : min(off+1+n, len(key))] {
			if lower(c) != c {
				return 0, fmt.Errorf("%w: name not in lower case", errRecordKey)
			}
		}
		off += 1 + n
		if off > maxWireName {
			return 0, fmt.Errorf("%w: name too long", errRecordKey)
		}
		if n == 0 {
			break
		}
	}
	nameLen := off
	if len(key) < nameLen+5 {
		return 0, errRecordKey
	}
	flags := key[nameLen+4]
	if flags&^(keyDO|keyCD|keyECS|keyV4|keyTags) != 0 || (flags&keyV4 != 0 && flags&keyECS == 0) {
		return 0, fmt.Errorf("%w: unknown flags", errRecordKey)
	}
	off = nameLen + 5
	if flags&keyECS != 0 {
		if len(key) < off+17 {
			return 0, errRecordKey
		}
		bits := int(key[off])
		a := netip.AddrFrom16([16]byte(key[off+1 : off+17]))
		if flags&keyV4 != 0 {
			if !a.Is4In6() {
				return 0, fmt.Errorf("%w: ECS family", errRecordKey)
			}
			a = a.Unmap()
		}
		p, err := a.Prefix(bits)
		if err != nil || bits == 0 || p.Addr() != a {
			return 0, fmt.Errorf("%w: ECS prefix", errRecordKey)
		}
		off += 17
	}
	if flags&keyTags != 0 {
		if len(key) < off+2 {
			return 0, errRecordKey
		}
		n := int(binary.BigEndian.Uint16(key[off:]))
		off += 2
		for range n {
			if len(key) < off+2 {
				return 0, errRecordKey
			}
			off += 2 + int(binary.BigEndian.Uint16(key[off:]))
			if off > len(key) {
				return 0, errRecordKey
			}
		}
	}
	return nameLen, nil
}

// Restore stores the records rs, which CheckRecord accepted, read elapsed
// before now: each has aged that much more. The first records are the
// most valuable (see Records): they are stored last, so that a cache
// smaller than rs keeps them and evicts the rest. A record is clamped to
// this cache's configuration (MaxTTL or NegativeTTL, the stale window);
// one that has expired by then is skipped. Restore returns how many it
// stored; it copies what it keeps and does not modify rs.
func (c *Cache) Restore(rs []Record, elapsed time.Duration) int {
	now := c.now()
	elapsed = max(elapsed, 0)
	c.presize(rs)
	n := 0
	for i := len(rs) - 1; i >= 0; i-- {
		r := &rs[i]
		nameLen, err := checkKey(r.Key)
		if err != nil {
			continue
		}
		offs, err := ttlOffsets(r.Msg, nil)
		if err != nil || !stableNames(r.Msg, offs) {
			continue
		}
		ttl := min(r.TTL, c.recordCap(r.Msg))
		staleFor := min(r.Stale, c.maxStale)
		life := time.Duration(uint64(ttl)+uint64(staleFor)) * time.Second
		if r.Age >= life || elapsed >= life-r.Age {
			continue // expired by now (compared so that nothing overflows)
		}
		age := r.Age + elapsed
		e := newEntry(r.Key, r.Msg, offs, now.Add(-age), ttl, staleFor)
		if e == nil {
			continue
		}
		if ttl < r.TTL {
			c.clampTTLs(e.msg(), e.ttls(), ttl) // e's own copy, not yet shared
		}
		e.authentic, e.dnssec = r.Authentic, r.DNSSEC
		e.hits.Store(r.Hits)
		if r.FailedAgo >= 0 && r.FailedAgo < c.recheck {
			e.failed.Store(now.Add(-r.FailedAgo - elapsed).UnixNano())
		}
		if off := ecsOff(r.Key, nameLen); off >= 0 {
			c.scopes.add(r.Key[nameLen+4]&keyV4 != 0, int(r.Key[off]))
		}
		s, _ := c.locate(r.Key)
		s.put(e)
		n++
	}
	return n
}

// presize gives every empty shard a map with room for the records of rs
// it will hold, so that restoring a large cache does not grow the maps
// step by step.
func (c *Cache) presize(rs []Record) {
	counts := make([]int, len(c.shards))
	for i := range rs {
		counts[maphash.Bytes(c.seed, rs[i].Key)&c.mask]++ // see locate
	}
	for i, n := range counts {
		s := &c.shards[i]
		s.mu.Lock()
		if s.idx.len() == 0 && n > 8 {
			s.idx.reserve(min(n, s.max))
		}
		s.mu.Unlock()
	}
}

// recordCap is the longest lifetime this cache gives the packed answer
// msg: MaxTTL for a NOERROR answer with records, NegativeTTL for other
// NOERROR and NXDOMAIN answers, ServfailTTL otherwise.
func (c *Cache) recordCap(msg []byte) uint32 {
	switch msg[3] & 0xF {
	case 0:
		if binary.BigEndian.Uint16(msg[6:]) > 0 {
			return c.maxTTL
		}
		return c.negativeTTL
	case 3:
		return c.negativeTTL
	}
	return c.servfailTTL
}
