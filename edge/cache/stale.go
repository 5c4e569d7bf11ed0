package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// serveStale answers req from e, an entry age seconds old that is past
// its TTL but inside its stale window (RFC 8767):
//
//   - when e expired less than StaleWhileRevalidate ago, or its last
//     refresh failed less than FailureRecheck ago, e is answered at once,
//     stale; in the first case a background refresh starts, one per key;
//   - otherwise next is asked (or the refresh already in flight joined),
//     and its answer is returned if it is usable and comes within
//     ClientTimeout; if it fails or is late, e is answered stale while
//     the refresh goes on in the background and updates the cache.
//
// A stale answer has every TTL set to StaleTTL and carries EDE 3.
func (c *Cache) serveStale(ctx context.Context, s *shard, e *entry, age uint32, key, qname []byte, next pipeline.Handler, req *pipeline.Request, now time.Time) (*dns.Msg, error) {
	nameLen := len(qname)
	recheck := c.rechecking(e, now)
	if recheck || age-e.ttl < c.swr {
		why := staleRecheck
		if !recheck {
			why = staleRevalidate
			c.refresh(s, string(key), nameLen, next, req)
		}
		if m := c.staleAnswer(s, e, age, qname, req, why); m != nil {
			return m, nil
		}
		s.misses.Add(1)
		return c.coalesced(ctx, s, key, nameLen, next, req)
	}

	var why string
	cl, leader := s.join(key)
	if leader {
		s.watch(cl) // it waits below while the refresh runs
	}
	if leader && !c.lead(s, string(key), nameLen, cl, next, req) {
		// Closed: nobody will refresh; ask in the foreground.
		reply, err := next.ServeDNS(ctx, req)
		cl.out, cl.wire = req.Outcome, req.Upstream.WireOf(reply)
		c.finish(judged(ctx, reply, err), s, key, nameLen, cl, reply, err, nil)
		if usable(reply, err) {
			return reply, nil
		}
		why = staleFailed(reply, err)
	} else {
		timer := time.NewTimer(c.clientTimeout)
		select {
		case <-cl.done:
			timer.Stop()
			if usable(cl.reply, cl.err) {
				m, err, _ := cl.result(ctx, req)
				// The refresh this query started answered it: its
				// own upstream answer, not another query's.
				req.Outcome.Coalesced = req.Outcome.Coalesced && !leader
				return m, err
			}
			why = staleFailed(cl.reply, cl.err)
		case <-timer.C:
			why = staleSlow
		case <-ctx.Done():
			timer.Stop()
			why = staleDeadline
		}
		if !leader {
			s.leave(key, cl) // answered stale, not by the call
		}
	}
	if m := c.staleAnswer(s, e, age, qname, req, why); m != nil {
		return m, nil
	}
	return nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Text: "no upstream answered in time"}
}

// staleAnswer answers req from e, stale, counts it and records in
// req.Outcome the source and EDE 3 (Stale Answer) with why, the reason.
func (c *Cache) staleAnswer(s *shard, e *entry, age uint32, qname []byte, req *pipeline.Request, why string) *dns.Msg {
	m, _ := c.answer(s, e, age, qname, req.Msg, true) // EDE 3: no client wire
	if m != nil {
		s.staleServed.Add(1)
		req.Outcome.Source = pipeline.SourceStale
		req.Outcome.DNSSEC = e.dnssec
		req.Outcome.SetEDE(dns.ExtendedErrorCodeStaleAnswer, why)
	}
	return m
}

// Why a stale answer was served, recorded as the text of its EDE in
// Request.Outcome for the query log and the JSON API. The EXTRA-TEXT on
// the wire stays empty: stale answers share one template.
const (
	staleRecheck     = "served stale (RFC 8767): upstream failed recently"
	staleRevalidate  = "served stale (RFC 8767): refreshing in the background"
	staleSlow        = "served stale (RFC 8767): upstream too slow"
	staleDeadline    = "served stale (RFC 8767): query deadline reached"
	staleTimeout     = "served stale (RFC 8767): no upstream answered in time"
	staleUnreachable = "served stale (RFC 8767): upstream unreachable"
	staleServfail    = "served stale (RFC 8767): upstream answered SERVFAIL"
	staleRefused     = "served stale (RFC 8767): upstream answered REFUSED"
	staleFailure     = "served stale (RFC 8767): upstream failed"
)

// staleFailed is the reason for a stale answer served because refreshing
// the entry ended with reply and err, an outcome that is not usable.
func staleFailed(reply *dns.Msg, err error) string {
	var pe *pipeline.Error
	switch {
	case err == nil && reply != nil && reply.Rcode == dns.RcodeRefused:
		return staleRefused
	case err == nil && reply != nil:
		return staleServfail
	case isDeadline(err):
		return staleTimeout
	case errors.As(err, &pe) && pe.EDE == dns.ExtendedErrorCodeNoReachableAuthority:
		return staleTimeout
	case errors.As(err, &pe) && pe.EDE == dns.ExtendedErrorCodeNetworkError:
		return staleUnreachable
	}
	return staleFailure
}

// maybePrefetch refreshes e in the background when it is popular and
// close to expiry: a TTL of at least prefetchMinTTL seconds, at least
// PrefetchHits hits before this one, and less than a tenth of its TTL
// left at age. An entry whose refresh failed recently is left alone.
func (c *Cache) maybePrefetch(s *shard, e *entry, age uint32, key []byte, nameLen int, next pipeline.Handler, req *pipeline.Request) {
	if !c.prefetch || e.ttl < prefetchMinTTL {
		return
	}
	if e.hits.Load() < c.prefetchHits {
		e.hits.Add(1)
		return
	}
	if uint64(e.ttl-age)*10 > uint64(e.ttl) || c.rechecking(e, c.now()) {
		return
	}
	if c.refresh(s, string(key), nameLen, next, req) {
		s.prefetches.Add(1)
	}
}

// refresh asks next for key in the background unless a query for key is
// already in flight or maxRefreshes are running. It reports whether it
// started one.
func (c *Cache) refresh(s *shard, key string, nameLen int, next pipeline.Handler, req *pipeline.Request) bool {
	if c.refreshes.Load() >= maxRefreshes {
		return false
	}
	cl := s.begin(key)
	if cl == nil {
		return false
	}
	if !c.lead(s, key, nameLen, cl, next, req) {
		c.finish(false, s, []byte(key), nameLen, cl, nil, context.Canceled, nil)
		return false
	}
	return true
}

// lead asks next for cl's key in the background and finishes cl with the
// answer. The query is a copy of req marked internal, so that nothing
// the listener does with req afterwards reaches it. It returns false,
// starting nothing, once the cache is closed.
func (c *Cache) lead(s *shard, key string, nameLen int, cl *call, next pipeline.Handler, req *pipeline.Request) bool {
	r := req.Detach() // Wire goes back to the listener with req
	r.Msg = req.Msg.Copy()
	r.Listener = pipeline.KindInternal
	// The tenant picked for req keys the answer in the shared cache.
	r.Outcome.Tenant = req.Outcome.Tenant
	c.refreshes.Add(1)
	ok := c.background(func(ctx context.Context) {
		defer c.refreshes.Add(-1)
		reply, err := next.ServeDNS(ctx, &r)
		cl.out, cl.auth, cl.wire = r.Outcome, authenticity(&r, reply), r.Upstream.WireOf(reply)
		// Running out of RefreshTimeout is the upstream's failure;
		// being closed is not.
		c.finish(c.base.Err() == nil, s, []byte(key), nameLen, cl, reply, err, nil)
	})
	if !ok {
		c.refreshes.Add(-1)
	}
	return ok
}

// setTTLs sets every TTL field of the packed message msg to ttl.
func setTTLs(msg []byte, offs []uint16, ttl uint32) {
	for _, off := range offs {
		binary.BigEndian.PutUint32(msg[off:off+4], ttl)
	}
}
