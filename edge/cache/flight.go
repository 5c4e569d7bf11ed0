package cache

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// call is one query to next in flight for a key: a miss, a refresh of a
// stale entry or a prefetch. Queries for the same key that arrive
// meanwhile wait for its answer instead of asking again.
type call struct {
	// done is closed when reply and err are set. It is made only for a
	// call someone waits on besides the goroutine that asks next (see
	// watchLocked); a call nobody else ever held goes back to calls.
	done  chan struct{}
	reply *dns.Msg
	err   error
	// out is what the stages after the cache recorded about the query
	// that asked next (source, path, DNSSEC verdict, EDE); set before
	// finish, read by the waiters (see follow).
	out pipeline.Outcome
	// auth is whether reply is authentic (see authenticity); set with
	// out.
	auth bool
	// wire is reply's wire form as the upstream sent it, when the
	// forward stage kept it (see pipeline.UpstreamReply); set with out.
	// The cache stores it instead of packing reply.
	wire []byte
	// waiters counts the queries sharing this call besides the first.
	waiters int
}

// join returns the call in flight for key, or registers a new one and
// returns it with leader true: the caller must then ask next and finish
// it. A query that joins an existing call counts as one of its waiters.
func (s *shard) join(key []byte) (cl *call, leader bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cl, ok := s.calls[string(key)]; ok {
		cl.waiters++
		cl.watchLocked()
		return cl, false
	}
	cl = calls.Get().(*call)
	s.calls[string(key)] = cl
	return cl, true
}

// calls holds calls that nobody but their leader ever held, for reuse.
var calls = sync.Pool{New: func() any { return new(call) }}

// watch makes cl's done channel, for a leader that waits on its own call
// while another goroutine asks next (see lead).
func (s *shard) watch(cl *call) {
	s.mu.Lock()
	cl.watchLocked()
	s.mu.Unlock()
}

// watchLocked makes cl's done channel if it has none; the shard's lock is
// held.
func (cl *call) watchLocked() {
	if cl.done == nil {
		cl.done = make(chan struct{})
	}
}

// leave takes back a query's place among cl's waiters when it stopped
// waiting before cl finished (it was answered stale), so that it is not
// counted as coalesced.
func (s *shard) leave(key []byte, cl *call) {
	s.mu.Lock()
	if s.calls[string(key)] == cl && cl.waiters > 0 {
		cl.waiters--
	}
	s.mu.Unlock()
}

// begin registers a new call for key and returns it, or returns nil when
// one is already in flight: background refreshes never queue behind each
// other, so there is at most one per key.
func (s *shard) begin(key string) *call {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.calls[key]; ok {
		return nil
	}
	cl := calls.Get().(*call)
	s.calls[key] = cl
	return cl
}

// finish records what next answered for cl's key, unregisters cl and
// wakes its waiters. A usable reply is cached. A failure (an error, or a
// SERVFAIL or REFUSED reply) leaves a stale entry in place and marks when
// its refresh failed, so it is served stale for FailureRecheck without
// asking next again (RFC 8767 §5); without a stale entry a SERVFAIL reply,
// or an error saying every upstream path failed, is cached for
// ServfailTTL (RFC 9520). A failure is only recorded when judge is
// true: a client's deadline or the cache's closing say nothing about the
// upstream. client is insert's: where a leader gets the wire form of
// reply for its own client, or nil.
func (c *Cache) finish(judge bool, s *shard, key []byte, nameLen int, cl *call, reply *dns.Msg, err error, client *[]byte) {
	cl.reply, cl.err = reply, err
	switch {
	case usable(reply, err):
		e := c.insert(s, key, nameLen, reply, cl.wire, cl.auth, cl.out.DNSSEC, client)
		if e != nil && c.l2 != nil && cl.out.Source == pipeline.SourceUpstream {
			c.share(e, cl.out.Tenant)
		}
	case !judge:
	default:
		ks, h := c.locate(key) // s, the shard of key
		if _, old, _, _ := c.lookup(ks, h, key, nameLen, c.now()); old != nil && old.stale > 0 {
			old.failed.Store(c.now().UnixNano())
			s.refreshFailures.Add(1)
		} else if err == nil && reply != nil {
			c.insert(s, key, nameLen, reply, cl.wire, cl.auth, cl.out.DNSSEC, client)
		} else if errors.Is(err, pipeline.ErrUpstreamFailed) {
			c.insertFailure(s, key, err)
		}
	}
	c.settle(s, key, cl)
}

// settle unregisters cl, whose outcome is set, and wakes its waiters. A
// call without a done channel was never held by anyone but its leader,
// and can no longer be joined: it goes back to calls, so the leader must
// not touch it after finish or settle.
func (c *Cache) settle(s *shard, key []byte, cl *call) {
	s.mu.Lock()
	delete(s.calls, string(key))
	waiters, done := cl.waiters, cl.done
	s.mu.Unlock()
	if done == nil {
		*cl = call{}
		calls.Put(cl)
		return
	}
	close(done)
	if waiters > 0 {
		s.coalesced.Add(uint64(waiters))
	}
}

// judged is finish's judge for next's outcome to a query with ctx: false
// when it is a failure and ctx ended (see finish). A usable answer is
// judged without asking ctx, whose Err may read the clock.
func judged(ctx context.Context, reply *dns.Msg, err error) bool {
	return usable(reply, err) || ctx.Err() == nil
}

// usable reports whether next's outcome is an answer worth caching and
// serving in place of a stale one.
func usable(reply *dns.Msg, err error) bool {
	return err == nil && reply != nil &&
		reply.Rcode != dns.RcodeServerFailure && reply.Rcode != dns.RcodeRefused
}

// coalesced answers a miss for key through next, once for all the
// identical misses in flight: the first becomes the leader and asks next;
// the others wait for its answer, each within its own ctx, and get a copy
// (a reply belongs to the query it answers). When the leader fails
// because its own deadline passed, a waiter whose budget lasts asks again
// rather than inherit that failure.
func (c *Cache) coalesced(ctx context.Context, s *shard, key []byte, nameLen int, next pipeline.Handler, req *pipeline.Request) (*dns.Msg, error) {
	for {
		cl, leader := s.join(key)
		if leader && c.l2 != nil {
			return c.leadShared(ctx, s, key, nameLen, cl, next, req)
		}
		if leader {
			reply, err := next.ServeDNS(ctx, req)
			cl.out, cl.auth, cl.wire = req.Outcome, authenticity(req, reply), req.Upstream.WireOf(reply)
			var client []byte
			c.finish(judged(ctx, reply, err), s, key, nameLen, cl, reply, err, &client)
			if client != nil {
				req.Cached = pipeline.CachedReply{Msg: reply, Wire: client}
			}
			return reply, err
		}
		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if m, err, again := cl.result(ctx, req); !again {
			return m, err
		}
	}
}

// leadShared is the leader's part of coalesced with a shared cache: it
// asks the shared cache and next (see askShared) and finishes cl with the
// answer. An answer from the shared cache is already stored here; it
// settles cl without storing it again.
func (c *Cache) leadShared(ctx context.Context, s *shard, key []byte, nameLen int, cl *call, next pipeline.Handler, req *pipeline.Request) (*dns.Msg, error) {
	reply, e, err := c.askShared(ctx, key, nameLen, next, req)
	if e != nil {
		// A late answer may have cut next short: nothing next recorded
		// describes this answer.
		req.Outcome.Source, req.Outcome.DNSSEC, req.Outcome.Path = pipeline.SourceCache, e.dnssec, ""
		req.Outcome.HasEDE, req.Outcome.EDE, req.Outcome.EDEText = false, 0, ""
		cl.out, cl.auth = req.Outcome, e.authentic
		cl.reply = reply
		c.settle(s, key, cl)
		return reply, nil
	}
	cl.out, cl.auth, cl.wire = req.Outcome, authenticity(req, reply), req.Upstream.WireOf(reply)
	var client []byte
	c.finish(judged(ctx, reply, err), s, key, nameLen, cl, reply, err, &client)
	if client != nil {
		req.Cached = pipeline.CachedReply{Msg: reply, Wire: client}
	}
	return reply, err
}

// result returns cl's outcome for req, a query that waited on it: a copy
// of the reply with req's ID and question spelling, or the error. again
// is true when the call ended only because its own deadline passed while
// ctx still has time: the waiter should ask itself.
func (cl *call) result(ctx context.Context, req *pipeline.Request) (m *dns.Msg, err error, again bool) {
	switch {
	case cl.err != nil && ctx.Err() == nil && isDeadline(cl.err):
		return nil, nil, true
	case cl.err != nil || cl.reply == nil:
		return cl.reply, cl.err, false
	}
	// The key folds case: the question goes back as this query spelled
	// it, as it does on a hit.
	m = cl.reply.Copy()
	m.Id = req.Msg.Id
	m.CheckingDisabled = req.Msg.CheckingDisabled
	m.AuthenticatedData = cl.auth && wantsAD(req.Msg)
	if len(m.Question) == 1 {
		m.Question[0] = req.Question()
	}
	cl.follow(&req.Outcome)
	return m, nil, false
}

// follow records in o, the outcome of a query answered with cl's reply,
// what the stages after the cache learned while getting it: its source
// (upstream, normally), the path that answered, the DNSSEC verdict and
// the EDE, with Coalesced set. What stages before the cache recorded
// (tenant, policy rule) stays the query's own.
func (cl *call) follow(o *pipeline.Outcome) {
	o.Source, o.Path, o.DNSSEC, o.Coalesced = cl.out.Source, cl.out.Path, cl.out.DNSSEC, true
	if cl.out.HasEDE {
		o.SetEDE(cl.out.EDE, cl.out.EDEText)
	}
}

// authenticity reports whether reply, next's answer to req, is authentic:
// with DNSSEC validation inside the cache (req.Outcome.DNSSEC set), when
// its verdict is secure; otherwise when the upstream set AD on a query
// that had DO or AD, the only queries a validating upstream sets it for
// (RFC 6840 §5.8). The cache stores it with the answer and sets AD from
// it per query (see wantsAD), so one client's AD is never replayed to
// another.
func authenticity(req *pipeline.Request, reply *dns.Msg) bool {
	if reply == nil {
		return false
	}
	if req.Outcome.DNSSEC != pipeline.DNSSECNone {
		return req.Outcome.DNSSEC == pipeline.DNSSECSecure
	}
	return reply.AuthenticatedData && wantsAD(req.Msg)
}

// wantsAD reports whether the query q may get AD in its answer: it had
// DO or AD (RFC 6840 §5.8).
func wantsAD(q *dns.Msg) bool {
	if q.AuthenticatedData {
		return true
	}
	opt := q.IsEdns0()
	return opt != nil && opt.Do()
}

// isDeadline reports whether err is a context's end rather than an answer
// about the name.
func isDeadline(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// background starts fn in a goroutine that Close waits for, with a
// context that ends after RefreshTimeout or when the cache is closed. It
// returns false, starting nothing, once the cache is closed.
func (c *Cache) background(fn func(ctx context.Context)) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.base, c.refreshTimeout)
		defer cancel()
		fn(ctx)
	}()
	return true
}

// Close cancels the refreshes and prefetches running in the background
// and waits for them to end. Queries may still be served afterwards; they
// just start no background work.
func (c *Cache) Close() error {
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	c.stop()
	c.bg.Wait()
	return nil
}

// rechecking reports whether e's last refresh failed less than
// FailureRecheck before now.
func (c *Cache) rechecking(e *entry, now time.Time) bool {
	f := e.failed.Load()
	return f != 0 && now.UnixNano()-f < int64(c.recheck)
}
