package middleware

import (
	"cmp"
	"container/list"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/internal/dnsname"
	"github.com/dnsedge/dnsedge/edge/internal/promreg"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// NXDomain remembers, per route, names under the configured suffixes that
// the upstreams said do not exist, and denies them and every name below
// them locally for every type (RFC 8020: nothing exists below a name that
// does not exist), so a storm of bad names stops at the edge. It sits in
// front of the answer cache, which keeps NXDOMAIN per (name, type) only.
//
// A denial is kept for the configured TTL, never longer than the negative
// TTL of the SOA that came with it (RFC 2308 §5). Names are kept apart by
// Request.Route, since routes forward to upstream groups that may see
// different views. When a name strictly below a suffix is denied and the
// suffix's own state is unknown, the suffix itself is probed once in the
// background (an internal SOA query): a suffix that does not exist denies
// every name under it at once.
//
// An NXDomain is safe for concurrent use. Close stops its probes.
type NXDomain struct {
	suffixes []string // lower-case FQDNs, longest first
	ttl      time.Duration
	max      int
	now      func() time.Time

	hits   atomic.Uint64
	probes atomic.Uint64
	count  atomic.Int64 // entries in lru

	mu     sync.Mutex
	lru    list.List // of *nxEntry, most recently used first
	items  map[nxKey]*list.Element
	states map[nxKey]*suffixState
	closed bool

	ctx    context.Context // parent of every probe; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// nxKey is a route and a lower-case name (remembered, or a probed suffix).
type nxKey struct{ route, name string }

// nxEntry is one name remembered as not existing.
type nxEntry struct {
	key     nxKey
	soa     *dns.SOA // of the denial, nil if it had none; never modified once stored
	expires time.Time
}

// suffixState is what the probes know of a suffix.
type suffixState struct {
	running bool      // a probe is in flight
	known   time.Time // no new probe before then
}

// NewNXDomain returns the cache configured by cfg, which it validates.
// now is the clock (time.Now when nil). The metrics
// dnsedge_nxdomain_cache_{hits_total,probes_total,entries} are registered
// with reg unless it is nil, replacing those of a previous generation.
func NewNXDomain(cfg NXDomainConfig, now func() time.Time, reg prometheus.Registerer) (*NXDomain, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	n := &NXDomain{
		ttl:    cmp.Or(cfg.TTL, DefaultNXDomainTTL),
		max:    cmp.Or(cfg.MaxEntries, DefaultNXDomainMaxEntries),
		now:    now,
		items:  make(map[nxKey]*list.Element),
		states: make(map[nxKey]*suffixState),
	}
	for _, s := range cfg.Suffixes {
		name, _ := suffixName(s)
		n.suffixes = append(n.suffixes, name)
	}
	slices.SortFunc(n.suffixes, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	if err := n.Register(reg); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Register registers the cache's metrics with reg (nil: none), replacing
// those of a previous generation, so that one cache may serve several
// generations in turn.
func (n *NXDomain) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := promreg.Replace(reg, n.collectors()...); err != nil {
		return fmt.Errorf("nxdomain cache: register metrics: %w", err)
	}
	return nil
}

// Close cancels the suffix probes in flight and waits for them to end.
// Queries are still served afterwards, but no probe is started.
func (n *NXDomain) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	return nil
}

// Middleware returns the stage serving the cache in front of next. With no
// suffixes configured it returns next itself.
func (n *NXDomain) Middleware() pipeline.Middleware {
	return func(next pipeline.Handler) pipeline.Handler {
		if len(n.suffixes) == 0 {
			return next
		}
		return &nxHandler{n: n, next: next}
	}
}

// nxHandler serves n in front of next.
type nxHandler struct {
	n    *NXDomain
	next pipeline.Handler
}

var _ pipeline.Handler = (*nxHandler)(nil)

// ServeDNS denies a standard query (opcode QUERY, one question, class IN)
// for a remembered name or a name below one, and otherwise asks next and
// learns from a NXDOMAIN answer. Errors and answers of next are returned
// unchanged. Names under no suffix cost a suffix check: no lock, no
// allocation.
func (h *nxHandler) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	n, q := h.n, req.Msg
	if q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 || q.Question[0].Qclass != dns.ClassINET {
		return h.next.ServeDNS(ctx, req)
	}
	bound := n.cover(q.Question[0].Name)
	if bound < 0 {
		return h.next.ServeDNS(ctx, req)
	}
	name := dnsname.Lower(q.Question[0].Name)
	if soa, left, ok := n.lookup(req.Route, name, bound); ok {
		n.hits.Add(1)
		req.Outcome.Source = pipeline.SourceSynthesized
		return denial(q, soa, left), nil
	}
	res, err := h.next.ServeDNS(ctx, req)
	if err != nil || res == nil {
		return res, err
	}
	switch res.Rcode {
	case dns.RcodeNameError:
		h.learn(req.Route, name, res)
	case dns.RcodeSuccess:
		// The name, and every name of its CNAME chain, exists.
		n.forget(req.Route, name)
		for _, rr := range res.Answer {
			if c, ok := rr.(*dns.CNAME); ok && n.cover(c.Target) >= 0 {
				n.forget(req.Route, dnsname.Lower(c.Target))
			}
		}
	}
	return res, nil
}

// denial is the local answer to q: NXDOMAIN, recursion available, not
// authoritative, with a copy of soa whose TTL is the time left.
func denial(q *dns.Msg, soa *dns.SOA, left time.Duration) *dns.Msg {
	m := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
	m.RecursionAvailable = true
	if soa != nil {
		c := *soa
		c.Hdr.Ttl = uint32(left / time.Second)
		m.Ns = []dns.RR{&c}
	}
	return m
}

// learn remembers the name a NXDOMAIN answer denies: the query name, or
// the last target of the CNAME chain in the answer section, if that is
// under a suffix. A name strictly below a suffix starts a probe of the
// suffix.
func (h *nxHandler) learn(route, name string, res *dns.Msg) {
	if n := h.n; len(res.Answer) > 0 {
		target, ok := chainEnd(name, res.Answer)
		if !ok || n.cover(target) < 0 {
			return
		}
		name = dnsname.Lower(target)
	}
	soa := negativeSOA(res.Ns)
	ttl := h.n.negativeTTL(soa)
	if ttl <= 0 {
		return
	}
	h.n.store(nxKey{route, name}, soa, ttl)
	if s := h.n.parent(name); s != "" {
		h.n.probe(h.next, nxKey{route, s})
	}
}

// chainEnd follows the CNAME chain from name through answer and returns
// its last target; ok is false when the answer holds no chain from name or
// a chain that loops.
func chainEnd(name string, answer []dns.RR) (string, bool) {
	cur := name
	for range len(answer) + 1 {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, cur) {
				next = c.Target
				break
			}
		}
		if next == "" {
			return cur, cur != name
		}
		cur = next
	}
	return "", false
}

// negativeSOA returns a copy of the first SOA in ns, nil if there is none.
func negativeSOA(ns []dns.RR) *dns.SOA {
	for _, rr := range ns {
		if s, ok := rr.(*dns.SOA); ok {
			c := *s
			return &c
		}
	}
	return nil
}

// negativeTTL is how long a denial carrying soa is kept: the configured
// TTL, capped by min(SOA TTL, MINIMUM) as RFC 2308 §5 requires.
func (n *NXDomain) negativeTTL(soa *dns.SOA) time.Duration {
	if soa == nil {
		return n.ttl
	}
	return min(n.ttl, time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second)
}

// cover returns the length of the shortest suffix name is at or under, -1
// if none. It neither locks nor allocates.
func (n *NXDomain) cover(name string) int {
	shortest := -1
	for _, s := range n.suffixes {
		if underSuffix(name, s) {
			shortest = len(s) // suffixes are sorted longest first
		}
	}
	return shortest
}

// parent returns the longest suffix name is strictly below, "" if none.
func (n *NXDomain) parent(name string) string {
	for _, s := range n.suffixes {
		if len(name) > len(s) && underSuffix(name, s) {
			return s
		}
	}
	return ""
}

// underSuffix reports whether name, in any case, is suffix (lower case) or
// a name below it.
func underSuffix(name, suffix string) bool {
	if len(name) < len(suffix) {
		return false
	}
	tail := name[len(name)-len(suffix):]
	for i := 0; i < len(tail); i++ {
		c := tail[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != suffix[i] {
			return false
		}
	}
	if len(name) == len(suffix) {
		return true
	}
	// The suffix must start a label: the dot before it must be one not
	// escaped by an odd number of backslashes.
	dot := len(name) - len(suffix) - 1
	if name[dot] != '.' {
		return false
	}
	slashes := 0
	for j := dot - 1; j >= 0 && name[j] == '\\'; j-- {
		slashes++
	}
	return slashes%2 == 0
}

// lookup finds a fresh denial of name or of one of its ancestors down to
// the suffix of length bound (RFC 8020 §2), and returns its SOA and the
// time it has left. Expired entries met on the way are removed.
func (n *NXDomain) lookup(route, name string, bound int) (*dns.SOA, time.Duration, bool) {
	if n.count.Load() == 0 {
		return nil, 0, false
	}
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for off := 0; ; {
		if el, ok := n.items[nxKey{route, name[off:]}]; ok {
			e := el.Value.(*nxEntry)
			if left := e.expires.Sub(now); left > 0 {
				n.lru.MoveToFront(el)
				return e.soa, left, true
			}
			n.remove(el)
		}
		if len(name)-off <= bound {
			return nil, 0, false
		}
		next, end := dns.NextLabel(name, off)
		if end {
			return nil, 0, false
		}
		off = next
	}
}

// store remembers k as not existing for ttl, evicting the least recently
// used entries beyond the bound.
func (n *NXDomain) store(k nxKey, soa *dns.SOA, ttl time.Duration) {
	expires := n.now().Add(ttl)
	n.mu.Lock()
	defer n.mu.Unlock()
	if el, ok := n.items[k]; ok {
		e := el.Value.(*nxEntry)
		e.soa, e.expires = soa, expires
		n.lru.MoveToFront(el)
		return
	}
	// The name may be a slice of a query's name: do not keep that alive.
	k.name = strings.Clone(k.name)
	n.items[k] = n.lru.PushFront(&nxEntry{key: k, soa: soa, expires: expires})
	n.count.Add(1)
	for n.lru.Len() > n.max {
		n.remove(n.lru.Back())
	}
}

// forget drops the denial of exactly name, which has come to exist.
func (n *NXDomain) forget(route, name string) {
	if n.count.Load() == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if el, ok := n.items[nxKey{route, name}]; ok {
		n.remove(el)
	}
}

// remove drops el. n.mu is held.
func (n *NXDomain) remove(el *list.Element) {
	n.lru.Remove(el)
	delete(n.items, el.Value.(*nxEntry).key)
	n.count.Add(-1)
}
