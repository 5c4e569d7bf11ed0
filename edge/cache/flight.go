package cache

import (
	"context"
	"errors"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// call is one miss being asked upstream; the queries for the same key
// that arrive meanwhile wait for its answer instead of asking again.
type call struct {
	done  chan struct{} // closed when reply and err are set
	reply *dns.Msg
	err   error
	// waiters counts the queries sharing this call besides the first.
	waiters int
}

// coalesced answers a miss for key through next, once for all the
// identical misses in flight: the first becomes the leader and asks next;
// the others wait for its answer, each within its own ctx, and get a copy
// (a reply belongs to the query it answers). The shard's lock guards its
// calls. When the leader fails because its own deadline passed, a waiter
// whose budget lasts asks again rather than inherit that failure.
func (c *Cache) coalesced(ctx context.Context, s *shard, key []byte, nameLen int, next pipeline.Handler, req *pipeline.Request) (*dns.Msg, error) {
	for {
		s.mu.Lock()
		cl, waiting := s.calls[string(key)]
		if !waiting {
			cl = &call{done: make(chan struct{})}
			s.calls[string(key)] = cl
		} else {
			cl.waiters++
		}
		s.mu.Unlock()

		if !waiting {
			cl.reply, cl.err = next.ServeDNS(ctx, req)
			if cl.err == nil && cl.reply != nil {
				c.insert(s, key, nameLen, cl.reply)
			}
			s.mu.Lock()
			delete(s.calls, string(key))
			shared := cl.waiters > 0
			s.mu.Unlock()
			close(cl.done)
			if shared {
				s.coalesced.Add(uint64(cl.waiters))
			}
			return cl.reply, cl.err
		}

		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch {
		case cl.err != nil && ctx.Err() == nil && isDeadline(cl.err):
			continue // the leader ran out of time; this query has some left
		case cl.err != nil || cl.reply == nil:
			return cl.reply, cl.err
		}
		// The key folds case: the question goes back as this query
		// spelled it, as it does on a hit.
		m := cl.reply.Copy()
		m.Id = req.Msg.Id
		if len(m.Question) == 1 {
			m.Question[0] = req.Question()
		}
		return m, nil
	}
}

// isDeadline reports whether err is a context's end rather than an answer
// about the name.
func isDeadline(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
