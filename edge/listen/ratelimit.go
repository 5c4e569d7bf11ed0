package listen

import (
	"errors"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dnsedge/dnsedge/internal/field"
)

// RateLimit is the rate_limit section of the configuration file: a token
// bucket per client, a client being its address's prefix (IPv4Prefix,
// IPv6Prefix) or, with ByClientID, the client id its transport carries.
// Zero values take the documented defaults.
type RateLimit struct {
	// Enabled turns rate limiting off when false. Default true.
	Enabled *bool `yaml:"enabled"`
	// QPS is the sustained queries per second of one client. Default
	// 1000: more than the stub resolvers behind one /24 (a Kubernetes
	// node's pods, an office NAT) ask, far less than a flood.
	QPS float64 `yaml:"qps"`
	// Burst is the bucket size: queries a quiet client may send at once.
	// Default 2 × QPS.
	Burst int `yaml:"burst"`
	// IPv4Prefix and IPv6Prefix group client addresses into one client.
	// Defaults 24 and 56 (a customer's IPv6 allocation).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// ByClientID counts a query that carries a client id (DoH path,
	// DoT/DoQ SNI label) under that id instead of its address. The
	// client picks its id: turn it on only where ids are trusted (behind
	// an authenticating proxy). Default false.
	ByClientID bool `yaml:"by_client_id"`
	// MaxInFlight caps the queries of one client being served at once;
	// more are REFUSED. Default 100.
	MaxInFlight int `yaml:"max_in_flight"`
	// TCShare is the share of a UDP client's queries over the limit that
	// are answered TC=1 (a real client retries over TCP, where it cannot
	// spoof its address); the rest are REFUSED. Default 0.5; 0 refuses
	// them all.
	TCShare *float64 `yaml:"tc_share"`
	// Exempt are the client prefixes never limited. Default loopback
	// (127.0.0.0/8 and ::1): the application a sidecar serves. An empty
	// list exempts nobody.
	Exempt []string `yaml:"exempt"`
	// MaxClients bounds the clients tracked at once (memory: about 200
	// bytes each). When full, a new client takes the place of the least
	// recently seen of a few sampled ones. Default 65536.
	MaxClients int `yaml:"max_clients"`
}

// Defaults of RateLimit.
const (
	DefaultRateQPS        = 1000
	DefaultRateIPv4Prefix = 24
	DefaultRateIPv6Prefix = 56
	DefaultMaxInFlight    = 100
	DefaultTCShare        = 0.5
	DefaultMaxClients     = 65536
)

// On reports whether limiting is enabled.
func (r RateLimit) On() bool { return r.Enabled == nil || *r.Enabled }

// WithDefaults returns r with every zero value replaced by its default.
func (r RateLimit) WithDefaults() RateLimit {
	if r.QPS == 0 {
		r.QPS = DefaultRateQPS
	}
	if r.Burst == 0 {
		r.Burst = int(math.Min(2*r.QPS, math.MaxInt32))
		r.Burst = max(r.Burst, 1)
	}
	if r.IPv4Prefix == 0 {
		r.IPv4Prefix = DefaultRateIPv4Prefix
	}
	if r.IPv6Prefix == 0 {
		r.IPv6Prefix = DefaultRateIPv6Prefix
	}
	if r.MaxInFlight == 0 {
		r.MaxInFlight = DefaultMaxInFlight
	}
	if r.TCShare == nil {
		s := DefaultTCShare
		r.TCShare = &s
	}
	if r.Exempt == nil {
		r.Exempt = []string{"127.0.0.0/8", "::1/128"}
	}
	if r.MaxClients == 0 {
		r.MaxClients = DefaultMaxClients
	}
	return r
}

// Validate reports every value out of range, as field errors at their
// keys in the section.
func (r RateLimit) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) { errs = append(errs, field.Errorf(key, format, a...)) }
	if r.QPS < 0 || math.IsNaN(r.QPS) || math.IsInf(r.QPS, 0) {
		add("qps", "%v must be a positive number", r.QPS)
	}
	if r.Burst < 0 {
		add("burst", "%d must not be negative", r.Burst)
	}
	if r.IPv4Prefix < 0 || r.IPv4Prefix > 32 {
		add("ipv4_prefix", "%d is not a prefix length between 1 and 32", r.IPv4Prefix)
	}
	if r.IPv6Prefix < 0 || r.IPv6Prefix > 128 {
		add("ipv6_prefix", "%d is not a prefix length between 1 and 128", r.IPv6Prefix)
	}
	if r.MaxInFlight < 0 {
		add("max_in_flight", "%d must not be negative", r.MaxInFlight)
	}
	if r.TCShare != nil && !(*r.TCShare >= 0 && *r.TCShare <= 1) {
		add("tc_share", "%v is not a share between 0 and 1", *r.TCShare)
	}
	if r.MaxClients < 0 {
		add("max_clients", "%d must not be negative", r.MaxClients)
	}
	for i, s := range r.Exempt {
		if _, err := netip.ParsePrefix(s); err != nil {
			add(field.Index("exempt", i), "%q is not a CIDR prefix (write it like 192.0.2.0/24)", s)
		}
	}
	return errors.Join(errs...)
}

// verdict is what the rate limiter says of one query.
type verdict uint8

const (
	allow       verdict = iota
	limitTC             // over the rate: answer TC=1 (UDP only)
	limitRefuse         // over the rate or in-flight cap: answer REFUSED
)

// A RateLimiter keeps a token bucket (golang.org/x/time/rate) and a count
// of queries in flight per client, in a table of fixed size split into
// shards, each under its own lock. It outlives a configuration: a reload
// calls SetConfig, and clients keep their buckets. A nil *RateLimiter
// limits nothing. Safe for concurrent use.
type RateLimiter struct {
	cfg  atomic.Pointer[limiterConfig]
	now  func() time.Time
	seed maphash.Seed

	shards [rateShards]rateShard
}

// limiterConfig is a RateLimit ready for use.
type limiterConfig struct {
	RateLimit
	on       bool
	limit    rate.Limit
	exempt   *ACL // nil: nobody is exempt
	perShard int
	gen      uint64 // changes with every SetConfig
}

const (
	rateShards = 64
	// evictSample is how many clients a full shard looks at to choose
	// the one to forget.
	evictSample = 8
)

type rateShard struct {
	mu      sync.Mutex
	clients map[clientKey]*rateClient
}

// clientKey is a client: an address prefix, or a client id.
type clientKey struct {
	prefix netip.Prefix
	id     string
}

type rateClient struct {
	bucket   *rate.Limiter
	gen      uint64
	seen     time.Time
	over     uint64       // queries over the limit so far, for TCShare
	inFlight atomic.Int32 // queries being served
}

// NewRateLimiter returns a limiter configured with cfg (validated, then
// defaulted). now is its clock; nil means time.Now.
func NewRateLimiter(cfg RateLimit, now func() time.Time) (*RateLimiter, error) {
	if now == nil {
		now = time.Now
	}
	l := &RateLimiter{now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].clients = make(map[clientKey]*rateClient)
	}
	if err := l.SetConfig(cfg); err != nil {
		return nil, err
	}
	return l, nil
}

// SetConfig makes cfg the limits of every client, from its next query on;
// buckets keep their tokens. An invalid cfg is refused and changes
// nothing.
func (l *RateLimiter) SetConfig(cfg RateLimit) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	c := &limiterConfig{
		RateLimit: cfg,
		on:        cfg.On(),
		limit:     rate.Limit(cfg.QPS),
		perShard:  max(1, cfg.MaxClients/rateShards),
	}
	if len(cfg.Exempt) > 0 {
		ps := make([]netip.Prefix, len(cfg.Exempt))
		for i, s := range cfg.Exempt {
			ps[i] = netip.MustParsePrefix(s) // Validate parsed it
		}
		acl, err := NewACL(ps)
		if err != nil {
			return err
		}
		c.exempt = acl
	}
	if old := l.cfg.Load(); old != nil {
		c.gen = old.gen + 1
	}
	l.cfg.Store(c)
	return nil
}

// Config returns the limits in force, defaulted.
func (l *RateLimiter) Config() RateLimit { return l.cfg.Load().RateLimit }

// admit judges one query of client (its address) with client id id, on a
// UDP listener when udp. When the query may go on it returns allow and
// the client, whose done must be called once the query is answered (nil
// when the client is not tracked).
func (l *RateLimiter) admit(client netip.Addr, id string, udp bool) (verdict, *rateClient) {
	if l == nil {
		return allow, nil
	}
	cfg := l.cfg.Load()
	if !cfg.on {
		return allow, nil
	}
	client = client.Unmap()
	if cfg.exempt != nil && cfg.exempt.Allows(client) {
		return allow, nil
	}
	key := clientKey{}
	if cfg.ByClientID && id != "" {
		key.id = id
	} else {
		bits := cfg.IPv6Prefix
		if client.Is4() {
			bits = cfg.IPv4Prefix
		}
		key.prefix, _ = client.Prefix(bits)
	}
	s := &l.shards[l.shardOf(key)]
	now := l.now()
	s.mu.Lock()
	c := s.clients[key]
	if c == nil {
		if len(s.clients) >= cfg.perShard {
			s.evict()
		}
		c = &rateClient{bucket: rate.NewLimiter(cfg.limit, cfg.Burst), gen: cfg.gen}
		s.clients[key] = c
	} else if c.gen != cfg.gen {
		c.bucket.SetLimitAt(now, cfg.limit)
		c.bucket.SetBurstAt(now, cfg.Burst)
		c.gen = cfg.gen
	}
	c.seen = now
	if !c.bucket.AllowN(now, 1) {
		c.over++
		share := *cfg.TCShare
		tc := udp && math.Floor(float64(c.over)*share) > math.Floor(float64(c.over-1)*share)
		s.mu.Unlock()
		if tc {
			return limitTC, nil
		}
		return limitRefuse, nil
	}
	s.mu.Unlock()
	if c.inFlight.Add(1) > int32(cfg.MaxInFlight) {
		c.inFlight.Add(-1)
		return limitRefuse, nil
	}
	return allow, c
}

// done ends a query admit let through for c.
func (c *rateClient) done() {
	if c != nil {
		c.inFlight.Add(-1)
	}
}

func (l *RateLimiter) shardOf(k clientKey) int {
	var h maphash.Hash
	h.SetSeed(l.seed)
	b := k.prefix.Addr().As16()
	h.Write(b[:])
	h.WriteString(k.id)
	return int(h.Sum64() % rateShards)
}

// evict forgets the least recently seen of a few clients with no query
// in flight (map iteration starts at a random place), or of the sampled
// ones when all are busy. Called with s.mu held.
func (s *rateShard) evict() {
	var (
		victim     clientKey
		oldest     time.Time
		victimIdle bool
		found      bool
		sampled    int
	)
	for k, c := range s.clients {
		idle := c.inFlight.Load() == 0
		if !found || idle && !victimIdle || idle == victimIdle && c.seen.Before(oldest) {
			victim, oldest, victimIdle, found = k, c.seen, idle, true
		}
		if sampled++; sampled >= evictSample {
			break
		}
	}
	if found {
		delete(s.clients, victim)
	}
}

// clients returns the number of clients tracked, for tests.
func (l *RateLimiter) clients() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.clients)
		s.mu.Unlock()
	}
	return n
}
