package cache

import (
	"context"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache/l2"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Shared is a cache shared by several instances, asked on a miss before
// (and, past its budget, alongside) the upstream: the Redis store of
// package l2 in production. Implementations are safe for concurrent use.
type Shared interface {
	// Budget returns how long a miss waits for a lookup before it asks
	// the upstream too, and false when the shared cache is skipped (its
	// breaker is open).
	Budget() (time.Duration, bool)
	// Lookup starts reading keys and returns the channel that carries
	// their values, in order, once read. Values must answer question
	// (a cache key's first part: lower-cased wire name, QTYPE, QCLASS).
	// It never blocks.
	Lookup(question []byte, keys []string) <-chan l2.Result
	// Put writes v under key, to expire after ex, in the background;
	// it never blocks.
	Put(key string, v l2.Value, ex time.Duration)
	// KeyPrefix starts every key (see l2.KeyPrefix).
	KeyPrefix() string
}

// Shared returns the shared cache the cache was built with, nil if none.
func (c *Cache) Shared() Shared { return c.l2 }

// maxSharedKeys bounds the keys one lookup reads: an ECS query asks for
// its own prefix, the shorter scopes this instance has seen answers
// scoped to, and the key without ECS.
const maxSharedKeys = 6

// askShared answers a miss for key through the shared cache and next,
// racing them (see Config.L2): it asks the shared cache first and waits
// for it up to its budget. A valid, fresh answer found in time is the
// answer; a miss or an error asks next at once; past the budget next is
// asked, and a valid answer from the shared cache that arrives before
// next's cancels next and wins. No query waits for the shared cache
// longer than the budget, nor fails because of it.
//
// An answer from the shared cache is stored in the local cache with the
// time it was first stored, so its TTLs keep counting down from there;
// e is that entry (nil when next answered).
func (c *Cache) askShared(ctx context.Context, key []byte, nameLen int, next pipeline.Handler, req *pipeline.Request) (m *dns.Msg, e *entry, err error) {
	budget, ok := c.l2.Budget()
	if !ok {
		m, err = next.ServeDNS(ctx, req)
		return m, nil, err
	}
	var nameBuf [maxWireName]byte
	n, perr := dns.PackDomainName(req.Msg.Question[0].Name, nameBuf[:], 0, nil, false)
	if perr != nil {
		m, err = next.ServeDNS(ctx, req)
		return m, nil, err
	}
	qname := nameBuf[:n]
	cands := c.sharedKeys(key, nameLen)
	rkeys := make([]string, len(cands))
	for i, k := range cands {
		rkeys[i] = string(l2.AppendKey(nil, c.l2.KeyPrefix(), req.Outcome.Tenant, k))
	}
	question := append([]byte(nil), key[:nameLen+4]...)
	res := c.l2.Lookup(question, rkeys)

	t := c.clock.NewTimer(budget)
	select {
	case r := <-res:
		t.Stop()
		if m, e := c.fromShared(r, cands, qname, req.Msg); e != nil {
			c.l2hits.Add(1)
			return m, e, nil
		}
		c.l2misses.Add(1)
		m, err = next.ServeDNS(ctx, req)
		return m, nil, err
	case <-t.Chan():
		c.l2late.Add(1)
	case <-ctx.Done():
		t.Stop()
		return nil, nil, ctx.Err()
	}

	// Past the budget: ask next, and let a late answer from the shared
	// cache cancel it. Only this goroutine touches req; the watcher
	// reads req.Msg, which is read-only.
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var won *dns.Msg
	var wonE *entry
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case r := <-res:
			if m, e := c.fromShared(r, cands, qname, req.Msg); e != nil {
				won, wonE = m, e
				cancel()
			}
		case <-uctx.Done():
		}
	}()
	m, err = next.ServeDNS(uctx, req)
	cancel()
	<-done
	if wonE != nil {
		c.l2hits.Add(1)
		c.l2lateWins.Add(1)
		return won, wonE, nil
	}
	c.l2misses.Add(1)
	return m, nil, err
}

// sharedKeys returns the keys under which an answer to a query keyed key
// may be stored, most specific first (see ecs.go).
func (c *Cache) sharedKeys(key []byte, nameLen int) [][]byte {
	off := ecsOff(key, nameLen)
	if off < 0 {
		return [][]byte{append([]byte(nil), key...)}
	}
	v4 := key[nameLen+4]&keyV4 != 0
	src := int(key[off])
	out := [][]byte{append([]byte(nil), key...)}
	for bits := src - 1; bits > 0 && len(out) < maxSharedKeys-1; bits-- {
		if c.scopes.has(v4, bits) {
			out = append(out, rescope(nil, key, nameLen, bits))
		}
	}
	return append(out, rescope(nil, key, nameLen, 0))
}

// fromShared turns r, the values read for the keys cands, into the
// answer to q, whose name in wire format is qname: the first fresh value
// is stored in the local cache and answered from there; e is its entry,
// nil when none was fresh. A value past its TTL but inside its stale
// window is stored in the local cache when it holds nothing under that
// key, so that serve-stale can use it if the upstream fails.
func (c *Cache) fromShared(r l2.Result, cands [][]byte, qname []byte, q *dns.Msg) (*dns.Msg, *entry) {
	if r.Err != nil {
		return nil, nil
	}
	now := c.now()
	for i, v := range r.Values {
		if v.Msg == nil || i >= len(cands) || v.TTL == 0 {
			continue
		}
		// The shared store is another process's: a message whose names
		// read bytes a hit rewrites is not taken (see stableNames).
		offs, err := ttlOffsets(v.Msg, nil)
		if err != nil || !stableNames(v.Msg, offs) {
			continue
		}
		stored := time.Unix(0, min(v.Stored, now.UnixNano()))
		e := newEntry(cands[i], v.Msg, offs, stored, v.TTL, min(v.Stale, c.maxStale))
		if e == nil {
			continue
		}
		e.authentic, e.dnssec = v.Authentic, pipeline.DNSSECVerdict(v.DNSSEC)
		age, st := e.age(now)
		es, _ := c.locate(cands[i])
		switch st {
		case fresh:
			es.put(e)
			c.noteScope(cands[i], len(qname))
			if m, _ := c.answer(es, e, age, qname, q, false); m != nil {
				return m, e
			}
		case stale:
			if es.putIfAbsent(e) {
				c.noteScope(cands[i], len(qname))
				c.l2staleSeeds.Add(1)
			}
		}
	}
	return nil, nil
}

// noteScope records the ECS scope of key, if any, so that lookups try
// it.
func (c *Cache) noteScope(key []byte, nameLen int) {
	if off := ecsOff(key, nameLen); off >= 0 && key[off] > 0 {
		c.scopes.add(key[nameLen+4]&keyV4 != 0, int(key[off]))
	}
}

// share writes e, an entry just stored from an upstream answer for a
// query of tenant, to the shared cache, to expire at the end of its
// stale window.
func (c *Cache) share(e *entry, tenant string) {
	key := l2.AppendKey(nil, c.l2.KeyPrefix(), tenant, []byte(e.key()))
	ex := time.Duration(uint64(e.ttl)+uint64(e.stale)) * time.Second
	c.l2.Put(string(key), l2.Value{
		Msg: e.msg(), Stored: e.stored, TTL: e.ttl, Stale: e.stale,
		Authentic: e.authentic, DNSSEC: uint8(e.dnssec),
	}, ex)
}

// putIfAbsent stores e unless an entry is stored under its key, and
// reports whether it did.
func (s *shard) putIfAbsent(e *entry) bool {
	s.mu.Lock()
	ok := s.storedUnder(e.key()) != nil
	s.mu.Unlock()
	if ok {
		return false
	}
	s.put(e)
	return true
}
