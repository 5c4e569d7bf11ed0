// Package cache is the answer cache middleware. It stores what the next
// handler answers and serves later identical queries from memory, with
// every TTL counted down by the time the answer spent in the cache
// (RFC 1035 §3.2.1, RFC 2181 §8), negative answers kept as long as their
// SOA allows (RFC 2308 §5).
//
// Answers are stored packed, in wire format, with the offsets of their TTL
// fields. Once a second per entry that is hit, a copy of the bytes gets
// its TTLs and question case patched and is unpacked into a template;
// hits in that second return a shallow copy of the template with the
// query's ID, RD and CD, and AD as that query may see it (template.go).
// Answers are therefore read-only, as pipeline.Handler requires of every
// reply.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/internal/field"
)

// Config configures a Cache. The zero value is valid and means the
// defaults. TTL bounds are applied in whole seconds.
type Config struct {
	// MaxEntries bounds the number of cached answers; default 100000.
	// MaxBytes bounds the bytes they hold (message, key, bookkeeping and,
	// once an entry is hit, its unpacked template; estimated per entry);
	// default 64 MiB. When either is reached, the least recently used
	// entries of the shard being written are evicted.
	MaxEntries int
	MaxBytes   int64
	// MinTTL raises the lifetime of positive and negative answers;
	// default 0. MaxTTL caps positive answers; default 1h. A cap wins
	// over MinTTL when they disagree. Served TTLs never exceed the time
	// left to the entry.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL caps how long NXDOMAIN and NODATA answers are kept;
	// default 5m. Their TTL is min(SOA TTL, SOA MINIMUM) (RFC 2308 §5).
	NegativeTTL time.Duration
	// ServfailTTL is how long a SERVFAIL answer from the next handler,
	// or its error when every upstream path failed (one wrapping
	// pipeline.ErrUpstreamFailed), is kept; 0 (the default) keeps
	// neither. At most 5m (RFC 2308 §7.1, RFC 9520).
	ServfailTTL time.Duration

	// Serve-stale (RFC 8767). DisableStale turns it off. Otherwise an
	// expired entry is kept MaxStale (default 1 day) past its TTL and
	// served, with TTL StaleTTL (default 30s) and Extended DNS Error 3
	// "Stale Answer", when refreshing it fails or takes longer than
	// ClientTimeout (default 1.8s). After a failed refresh the entry is
	// served stale without asking next again for FailureRecheck
	// (default 30s).
	DisableStale   bool
	MaxStale       time.Duration
	StaleTTL       time.Duration
	ClientTimeout  time.Duration
	FailureRecheck time.Duration
	// StaleWhileRevalidate answers an entry that expired less than this
	// long ago at once, stale, and refreshes it in the background, one
	// refresh per key; default 0 (refresh first, within ClientTimeout).
	StaleWhileRevalidate time.Duration
	// RefreshTimeout bounds a refresh or prefetch that runs after the
	// query that started it was answered; default 5s.
	RefreshTimeout time.Duration

	// Prefetch: an entry with a TTL of at least 10s, hit PrefetchHits
	// times (default 2) while fresh, is refreshed in the background when
	// a hit finds less than a tenth of its TTL left. DisablePrefetch
	// turns it off.
	DisablePrefetch bool
	PrefetchHits    int

	// L2, when not nil, is a cache shared with other instances (package
	// l2 keeps it in Redis). A miss asks it first and waits for it up to
	// its budget, then asks next as well; the first valid answer wins and
	// is stored here. Answers next got from an upstream are written to
	// it in the background, unless they may not be cached (TC, TTL 0,
	// SERVFAIL), so that zone, policy and other local answers, which
	// never reach the cache, never reach it either. Its keys add the
	// tenant (Request.Outcome.Tenant) to this cache's key.
	L2 Shared

	// Now is the clock; time.Now when nil. Clock gives the timers of the
	// shared cache's budget; the real clock when nil.
	Now   func() time.Time
	Clock clockwork.Clock
}

// Defaults and limits of Config.
const (
	DefaultMaxEntries     = 100000
	DefaultMaxBytes       = 64 << 20
	DefaultMaxTTL         = time.Hour
	DefaultNegativeTTL    = 5 * time.Minute
	MaxServfailTTL        = 5 * time.Minute // RFC 2308 §7.1
	DefaultMaxStale       = 24 * time.Hour  // RFC 8767 §5: 1 to 3 days
	DefaultStaleTTL       = 30 * time.Second
	DefaultClientTimeout  = 1800 * time.Millisecond // RFC 8767 §5
	DefaultFailureRecheck = 30 * time.Second        // RFC 8767 §5
	DefaultRefreshTimeout = 5 * time.Second
	DefaultPrefetchHits   = 2

	// prefetchMinTTL keeps short-lived entries out of prefetch: their
	// last tenth is too short to matter.
	prefetchMinTTL = 10
	// maxRefreshes bounds the refreshes and prefetches running in the
	// background at once; beyond it a stale entry is still served, just
	// not refreshed by that query.
	maxRefreshes = 256

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
	// asOfRead is true when now is the real clock: a query is then
	// looked up as of when its listener read it (Request.Received), a
	// clock read the listener made anyway.
	asOfRead bool

	minTTL, maxTTL, negativeTTL, servfailTTL uint32 // seconds
	maxStale, staleTTL, swr                  uint32 // seconds
	clientTimeout, recheck, refreshTimeout   time.Duration
	prefetch                                 bool
	prefetchHits                             uint32

	// Background refreshes run under base, are counted in refreshes and
	// waited for by Close; bgMu orders starting one against Close.
	base      context.Context
	stop      context.CancelFunc
	bgMu      sync.Mutex
	closed    bool
	bg        sync.WaitGroup
	refreshes atomic.Int32

	// bufs holds *[]byte scratch buffers for unpacking answers. miekg/dns
	// copies everything it unpacks, so a buffer is reusable as soon as
	// Unpack returns (its own server pools read buffers the same way).
	bufs sync.Pool

	// scopes are the ECS prefix lengths entries were stored under.
	scopes scopes

	// l2 is the shared cache, nil when there is none; clock times its
	// budget. The counters are of misses that asked it (see askShared).
	l2                                                 Shared
	clock                                              clockwork.Clock
	l2hits, l2misses, l2late, l2lateWins, l2staleSeeds atomic.Uint64
}

// New returns an empty cache configured by cfg, or every problem with cfg
// joined into one error, each a *field.Error named by the configuration
// file's key ("cache.max_ttl").
//
// When reg is not nil the cache registers its metrics there:
// dnsedge_cache_hits_total, dnsedge_cache_misses_total,
// dnsedge_cache_evictions_total (entries pushed out to make room; expired
// entries dropped on lookup are not counted) and dnsedge_cache_entries.
// A Cache built for a new configuration generation takes the metrics over
// from the one it replaces in reg: its counters start at zero, which
// Prometheus reads as a counter reset.
func New(cfg Config, reg prometheus.Registerer) (*Cache, error) {
	if err := errors.Join(cfg.problems()...); err != nil {
		return nil, field.Prefix("cache", err)
	}
	// withDefaults leaves Now nil, so that a Config from Spec.Config
	// (which applies withDefaults) still tells the real clock here.
	realClock := cfg.Now == nil
	cfg = cfg.withDefaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := min(maxShards, max(1, cfg.MaxEntries/minPerShard))
	n = 1 << (bits.Len(uint(n)) - 1) // round down to a power of two
	c := &Cache{
		shards:         make([]shard, n),
		mask:           uint64(n - 1),
		seed:           maphash.MakeSeed(),
		now:            cfg.Now,
		asOfRead:       realClock,
		minTTL:         seconds(cfg.MinTTL),
		maxTTL:         seconds(cfg.MaxTTL),
		negativeTTL:    seconds(cfg.NegativeTTL),
		servfailTTL:    seconds(cfg.ServfailTTL),
		staleTTL:       seconds(cfg.StaleTTL),
		swr:            seconds(cfg.StaleWhileRevalidate),
		clientTimeout:  cfg.ClientTimeout,
		recheck:        cfg.FailureRecheck,
		refreshTimeout: cfg.RefreshTimeout,
		prefetch:       !cfg.DisablePrefetch,
		prefetchHits:   uint32(cfg.PrefetchHits),
		l2:             cfg.L2,
		clock:          cfg.Clock,
	}
	if !cfg.DisableStale {
		c.maxStale = seconds(cfg.MaxStale)
	}
	c.base, c.stop = context.WithCancel(context.Background())
	c.bufs.New = func() any { b := make([]byte, 0, 1232); return &b }
	for i := range c.shards {
		// Spread both bounds exactly: the shard sizes add up to them.
		per := cfg.MaxEntries / n
		if i < cfg.MaxEntries%n {
			per++
		}
		perBytes := cfg.MaxBytes / int64(n)
		if int64(i) < cfg.MaxBytes%int64(n) {
			perBytes++
		}
		c.shards[i].init(per, perBytes, c.seed)
	}
	if reg != nil {
		if err := c.Register(reg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// withDefaults returns cfg with every zero field that has a default set
// to it, but Now: nil there means the real clock (see New).
func (cfg Config) withDefaults() Config {
	set := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	set(&cfg.MaxTTL, DefaultMaxTTL)
	set(&cfg.NegativeTTL, DefaultNegativeTTL)
	set(&cfg.MaxStale, DefaultMaxStale)
	set(&cfg.StaleTTL, DefaultStaleTTL)
	set(&cfg.ClientTimeout, DefaultClientTimeout)
	set(&cfg.FailureRecheck, DefaultFailureRecheck)
	set(&cfg.RefreshTimeout, DefaultRefreshTimeout)
	if cfg.PrefetchHits == 0 {
		cfg.PrefetchHits = DefaultPrefetchHits
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	return cfg
}

// problems reports what is wrong with cfg, each a *field.Error named by
// the key of the configuration file's cache section (see Spec).
func (cfg Config) problems() []error {
	var errs []error
	if cfg.MaxEntries < 0 {
		errs = append(errs, field.Errorf("max_entries", "must not be negative"))
	}
	if cfg.MaxBytes < 0 {
		errs = append(errs, field.Errorf("max_bytes", "must not be negative"))
	}
	if cfg.PrefetchHits < 0 {
		errs = append(errs, field.Errorf("prefetch_hits", "must not be negative"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"min_ttl", cfg.MinTTL}, {"max_ttl", cfg.MaxTTL}, {"negative_ttl", cfg.NegativeTTL},
		{"max_stale", cfg.MaxStale}, {"stale_ttl", cfg.StaleTTL}, {"client_timeout", cfg.ClientTimeout},
		{"failure_recheck", cfg.FailureRecheck}, {"stale_while_revalidate", cfg.StaleWhileRevalidate},
		{"refresh_timeout", cfg.RefreshTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.name, "must not be negative"))
		}
	}
	if cfg.ServfailTTL < 0 || cfg.ServfailTTL > MaxServfailTTL {
		errs = append(errs, field.Errorf("servfail_ttl", "must be between 0s and %s (RFC 2308 §7.1)", MaxServfailTTL))
	}
	return errs
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

// ServeDNS answers req from the cache or from next: a fresh entry at
// once (prefetching it when it is popular and about to expire), a stale
// one as serve-stale allows (see serveStale), and a miss through one
// query to next shared by every identical miss in flight. A miss returns
// next's reply as it is and caches a packed copy of it.
//
// It records the source in req.Outcome: cache for a fresh entry (a cached
// failure included), stale for a stale one (with EDE 3 and the reason);
// a query that waited for an identical one in flight gets the source and
// path of that one's answer, with Coalesced set (see call.follow).
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
	now := req.Received
	if !c.asOfRead || now.IsZero() {
		now = c.now()
	}
	s, kh := c.locate(key) // calls for the key are kept here, whatever the entry's scope
	es, e, age, st := c.lookup(s, kh, key, len(qname), now)
	switch st {
	case fresh:
		if err := e.failure(); err != nil {
			es.hits.Add(1)
			req.Outcome.Source = pipeline.SourceCache
			return nil, err
		}
		if m, wire := c.answer(es, e, age, qname, req.Msg, false); m != nil {
			es.hits.Add(1)
			req.Outcome.Source = pipeline.SourceCache
			req.Outcome.DNSSEC = e.dnssec
			if wire != nil {
				req.Cached = pipeline.CachedReply{Msg: m, Wire: wire}
			}
			c.maybePrefetch(s, e, age, key, len(qname), h.next, req)
			return m, nil
		}
	case stale:
		return c.serveStale(ctx, s, e, age, key, qname, h.next, req, now)
	}
	s.misses.Add(1)
	return c.coalesced(ctx, s, key, len(qname), h.next, req)
}

// insertFailure caches err, next's failure to get any answer from the
// upstreams, under key for ServfailTTL (RFC 9520 §3.2: resolution
// failures are cached too, so that a dead upstream is not asked again for
// every query of the name). A hit returns err itself, so the stages
// outside the cache (the fallback zone) see the same failure.
func (c *Cache) insertFailure(s *shard, key []byte, err error) {
	if c.servfailTTL == 0 {
		return
	}
	e := newEntry(key, nil, nil, c.now(), c.servfailTTL, 0)
	if e == nil {
		return
	}
	e.tmpl.Store(&template{fail: err})
	s.put(e)
}

// locate returns the shard that holds key and the key's hash. The low
// bits of the hash pick the shard; the shard's index uses the others.
func (c *Cache) locate(key []byte) (*shard, uint64) {
	h := maphash.Bytes(c.seed, key)
	return &c.shards[h&c.mask], h
}

// addEDE adds an Extended DNS Error option (RFC 8914) to m's OPT record,
// adding an OPT when m has none. The listener passes EDE options on to
// clients that speak EDNS.
func addEDE(m *dns.Msg, code uint16, text string) {
	opt := m.IsEdns0()
	if opt == nil {
		opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		m.Extra = append(m.Extra, opt)
	}
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
}

// insert caches a packed copy of reply under key if reply is cacheable
// (see lifetime) and answers the question the key was built from, with
// whether it is authentic and its DNSSEC verdict, and returns the entry
// it stored (nil if none). Only positive and negative answers may be
// served stale. wire, when not nil, is reply as the upstream sent it
// (see pipeline.UpstreamReply): it is stored, ID cleared, instead of
// packing reply, and insert takes it over. When client is not nil and
// wire is stored as it came, *client is set to a copy of wire ready for
// the client whose query asked (see clientCopy), or nil.
func (c *Cache) insert(s *shard, key []byte, nameLen int, reply *dns.Msg, wire []byte, authentic bool, verdict pipeline.DNSSECVerdict, client *[]byte) *entry {
	ttl := c.lifetime(reply)
	if ttl == 0 {
		return nil
	}
	b := wire
	if b == nil {
		var err error
		if b, err = packStored(reply); err != nil {
			return nil
		}
	}
	if !sameQuestion(b, key, nameLen) {
		return nil
	}
	offs, err := ttlOffsets(b, nil)
	if err != nil {
		return nil
	}
	// An upstream's bytes are kept whole: a name may point past the
	// last record, so nothing after it can be cut off. They are the
	// message the forward stage unpacked, unless a name reads bytes a
	// hit rewrites (see stableNames): then what miekg/dns packs from
	// reply is stored instead.
	switch {
	case wire != nil && !stableNames(b, offs):
		if b, err = packStored(reply); err != nil || !sameQuestion(b, key, nameLen) {
			return nil
		}
		if offs, err = ttlOffsets(b, nil); err != nil {
			return nil
		}
	case wire != nil && client != nil:
		*client = clientCopy(b, reply)
	}
	binary.BigEndian.PutUint16(b, 0)
	c.clampTTLs(b, offs, ttl)
	var staleFor uint32
	if reply.Rcode != dns.RcodeServerFailure {
		staleFor = c.maxStale
	}
	var buf [keyStack]byte
	sk, ok := c.storeKey(buf[:0], key, nameLen, reply)
	if !ok {
		return nil
	}
	if string(sk) != string(key) {
		s, _ = c.locate(sk)
	}
	e := newEntry(sk, b, offs, c.now(), ttl, staleFor)
	if e == nil {
		return nil
	}
	e.authentic, e.dnssec = authentic, verdict
	s.put(e)
	return e
}

// packStored packs reply, compressed, for storing. It packs a shallow
// copy: packing reads the records, except that it writes the extended
// RCODE into the OPT record, so that one is copied (replies are
// read-only, see pipeline.Handler).
func packStored(reply *dns.Msg) ([]byte, error) {
	m := *reply
	m.Id = 0
	m.Compress = true
	for i, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			m.Extra = slices.Clone(m.Extra)
			m.Extra[i] = dns.Copy(opt)
			break
		}
	}
	return m.Pack()
}
