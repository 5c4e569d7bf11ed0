// Package cache is the answer cache middleware. It stores what the next
// handler answers and serves later identical queries from memory, with
// every TTL counted down by the time the answer spent in the cache
// (RFC 1035 §3.2.1, RFC 2181 §8), negative answers kept as long as their
// SOA allows (RFC 2308 §5).
//
// Answers are stored packed, in wire format, with the offsets of their TTL
// fields. A hit copies the bytes, patches ID, RD, question case and TTLs in
// place, and unpacks the copy, so the answers handed out share no memory
// with the cache or with each other.
package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Config configures a Cache. The zero value is valid and means the
// defaults. TTL bounds are applied in whole seconds.
type Config struct {
	// MaxEntries bounds the number of cached answers; default 100000.
	// When full, the least recently used entry of the shard being
	// written is evicted.
	MaxEntries int
	// MinTTL raises the lifetime of positive and negative answers;
	// default 0. MaxTTL caps positive answers; default 1h. A cap wins
	// over MinTTL when they disagree. Served TTLs never exceed the time
	// left to the entry.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL caps how long NXDOMAIN and NODATA answers are kept;
	// default 5m. Their TTL is min(SOA TTL, SOA MINIMUM) (RFC 2308 §5).
	NegativeTTL time.Duration
	// ServfailTTL is how long a SERVFAIL answer from the next handler is
	// kept; 0 (the default) does not cache SERVFAIL. At most 5m
	// (RFC 2308 §7.1).
	ServfailTTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Defaults and limits of Config.
const (
	DefaultMaxEntries  = 100000
	DefaultMaxTTL      = time.Hour
	DefaultNegativeTTL = 5 * time.Minute
	MaxServfailTTL     = 5 * time.Minute // RFC 2308 §7.1

	maxShards = 64
	// minPerShard keeps small caches on few shards, so that no shard is
	// left with room for nothing.
	minPerShard = 8
)

// A Cache holds answers and builds the middleware that serves them. It is
// safe for concurrent use. One Cache may back several chains; entries are
// kept apart by route (see the key in appendKey).
type Cache struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed
	now    func() time.Time

	minTTL, maxTTL, negativeTTL, servfailTTL uint32 // seconds

	// bufs holds *[]byte scratch buffers for unpacking hits. miekg/dns
	// copies everything it unpacks, so a buffer is reusable as soon as
	// Unpack returns (its own server pools read buffers the same way).
	bufs sync.Pool
}

// New returns an empty cache configured by cfg, or every problem with cfg
// joined into one error.
//
// When reg is not nil the cache registers its metrics there:
// dnsedge_cache_hits_total, dnsedge_cache_misses_total,
// dnsedge_cache_evictions_total (entries pushed out to make room; expired
// entries dropped on lookup are not counted) and dnsedge_cache_entries.
// A Cache built for a new configuration generation takes the metrics over
// from the one it replaces in reg: its counters start at zero, which
// Prometheus reads as a counter reset.
func New(cfg Config, reg prometheus.Registerer) (*Cache, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := min(maxShards, max(1, cfg.MaxEntries/minPerShard))
	n = 1 << (bits.Len(uint(n)) - 1) // round down to a power of two
	c := &Cache{
		shards:      make([]shard, n),
		mask:        uint64(n - 1),
		seed:        maphash.MakeSeed(),
		now:         cfg.Now,
		minTTL:      seconds(cfg.MinTTL),
		maxTTL:      seconds(cfg.MaxTTL),
		negativeTTL: seconds(cfg.NegativeTTL),
		servfailTTL: seconds(cfg.ServfailTTL),
	}
	c.bufs.New = func() any { b := make([]byte, 0, 1232); return &b }
	for i := range c.shards {
		// Spread MaxEntries exactly: the shard sizes add up to it.
		per := cfg.MaxEntries / n
		if i < cfg.MaxEntries%n {
			per++
		}
		c.shards[i].init(per)
	}
	if reg != nil {
		if err := register(reg, c.collectors()); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (cfg Config) validate() error {
	var errs []error
	if cfg.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("cache: max entries %d is negative", cfg.MaxEntries))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"min ttl", cfg.MinTTL}, {"max ttl", cfg.MaxTTL},
		{"negative ttl", cfg.NegativeTTL}, {"servfail ttl", cfg.ServfailTTL},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("cache: %s %s is negative", d.name, d.v))
		}
	}
	if cfg.ServfailTTL > MaxServfailTTL {
		errs = append(errs, fmt.Errorf("cache: servfail ttl %s exceeds %s (RFC 2308 §7.1)", cfg.ServfailTTL, MaxServfailTTL))
	}
	return errors.Join(errs...)
}

// seconds converts d to whole seconds, saturating at the largest TTL
// (RFC 2181 §8).
func seconds(d time.Duration) uint32 {
	return uint32(min(d/time.Second, 1<<31-1))
}

// Middleware returns the cache middleware: it answers from the cache when
// it can and otherwise calls next and caches what next returns. Queries
// that are not a standard query with one question bypass it.
func (c *Cache) Middleware() pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		return &handler{c: c, next: next}
	}
}

// Len returns the number of entries, expired ones not yet removed included.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		n += c.shards[i].len()
	}
	return n
}

type handler struct {
	c    *Cache
	next pipeline.Handler
}

var _ pipeline.Handler = (*handler)(nil)

// ServeDNS answers req from the cache or from next. On a miss the reply of
// next is returned as it is and a packed copy of it is cached.
func (h *handler) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	if !cacheable(req.Msg) {
		return h.next.ServeDNS(ctx, req)
	}
	var nameBuf [maxWireName]byte
	var keyBuf [keyStack]byte
	key, qname, ok := appendKey(keyBuf[:0], nameBuf[:], req)
	if !ok {
		return h.next.ServeDNS(ctx, req)
	}
	c := h.c
	s := &c.shards[maphash.Bytes(c.seed, key)&c.mask]
	if m := c.hit(s, key, qname, req.Msg); m != nil {
		s.hits.Add(1)
		return m, nil
	}
	s.misses.Add(1)
	return c.coalesced(ctx, s, key, len(qname), h.next, req)
}

// hit returns the answer to q from s, or nil.
func (c *Cache) hit(s *shard, key, qname []byte, q *dns.Msg) *dns.Msg {
	e, age := s.get(key, c.now())
	if e == nil {
		return nil
	}
	bp := c.bufs.Get().(*[]byte)
	b := e.appendAnswer((*bp)[:0], age, q.Id, q.RecursionDesired, qname)
	m := new(dns.Msg)
	err := m.Unpack(b)
	*bp = b
	c.bufs.Put(bp)
	if err != nil {
		// Only a bug in packing or patching gets here: drop the entry
		// rather than serve it again.
		s.remove(e)
		return nil
	}
	return m
}

// insert caches a packed copy of reply under key if reply is cacheable
// (see lifetime) and answers the question the key was built from.
func (c *Cache) insert(s *shard, key []byte, nameLen int, reply *dns.Msg) {
	ttl := c.lifetime(reply)
	if ttl == 0 {
		return
	}
	m := *reply // shallow: Pack only reads the records
	m.Id = 0
	m.Compress = true
	b, err := m.Pack()
	if err != nil || !sameQuestion(b, key, nameLen) {
		return
	}
	offs, err := ttlOffsets(b, nil)
	if err != nil {
		return
	}
	c.clampTTLs(b, offs, ttl)
	s.put(&entry{key: string(key), msg: b, ttls: offs, stored: c.now(), ttl: ttl})
}
