package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// waiters returns how many queries wait on the call in flight for the
// key of q, -1 when there is none.
func (c *Cache) waiters(t testing.TB, req *pipeline.Request) int {
	var nameBuf [maxWireName]byte
	var keyBuf [keyStack]byte
	key, _, ok := appendKey(keyBuf[:0], nameBuf[:], req)
	if !ok {
		t.Fatal("no key")
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		cl, found := s.calls[string(key)]
		n := -1
		if found {
			n = cl.waiters
		}
		s.mu.Unlock()
		if found {
			return n
		}
	}
	return -1
}

// gated is an upstream that answers only once its gate opens.
type gated struct {
	gate  chan struct{}
	calls atomic.Int64
	err   error
}

func (g *gated) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	g.calls.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.err != nil {
		return nil, g.err
	}
	return answerAny(req.Msg)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCoalescedMisses: 1000 concurrent identical misses are asked
// upstream once, and every query gets the answer with its own ID.
func TestCoalescedMisses(t *testing.T) {
	t.Parallel()
	c := newCache(t, Config{})
	up := &gated{gate: make(chan struct{})}
	h := c.Middleware()(up)
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			m, err := h.ServeDNS(context.Background(), query{id: uint16(i)}.request(t))
			switch {
			case err != nil:
				errs <- err
			case m.Id != uint16(i) || len(m.Answer) != 1:
				errs <- errors.New("wrong reply")
			}
		})
	}
	probe := query{}.request(t)
	waitFor(t, "999 queries waiting on the first", func() bool { return c.waiters(t, probe) == n-1 })
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := up.calls.Load(); got != 1 {
		t.Fatalf("%d upstream queries for %d identical misses, want 1", got, n)
	}
	var coalesced uint64
	for i := range c.shards {
		coalesced += c.shards[i].coalesced.Load()
	}
	if coalesced != n-1 {
		t.Errorf("coalesced = %d, want %d", coalesced, n-1)
	}
	// The answer is cached too.
	if _, err := h.ServeDNS(context.Background(), query{id: 1}.request(t)); err != nil || up.calls.Load() != 1 {
		t.Errorf("after the flight: %v, %d upstream queries", err, up.calls.Load())
	}
}

// TestCoalescedCases covers what coalescing must not do.
func TestCoalescedCases(t *testing.T) {
	t.Parallel()
	t.Run("different keys are asked apart", func(t *testing.T) {
		t.Parallel()
		c := newCache(t, Config{})
		up := &gated{gate: make(chan struct{})}
		h := c.Middleware()(up)
		var wg sync.WaitGroup
		for _, q := range []query{{}, {do: true}, {cd: true}} {
			wg.Go(func() { h.ServeDNS(context.Background(), q.request(t)) })
		}
		waitFor(t, "three upstream queries", func() bool { return up.calls.Load() == 3 })
		close(up.gate)
		wg.Wait()
	})
	t.Run("an error is shared", func(t *testing.T) {
		t.Parallel()
		c := newCache(t, Config{})
		boom := &pipeline.Error{Text: "all paths failed"}
		up := &gated{gate: make(chan struct{}), err: boom}
		h := c.Middleware()(up)
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for range 10 {
			wg.Go(func() {
				_, err := h.ServeDNS(context.Background(), query{}.request(t))
				errs <- err
			})
		}
		waitFor(t, "9 waiters", func() bool { return c.waiters(t, query{}.request(t)) == 9 })
		close(up.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, boom) {
				t.Fatalf("got %v, want the upstream's error", err)
			}
		}
		if up.calls.Load() != 1 {
			t.Fatalf("%d upstream queries, want 1", up.calls.Load())
		}
	})
	t.Run("a waiter outlives a leader that ran out of time", func(t *testing.T) {
		t.Parallel()
		c := newCache(t, Config{})
		up := &gated{gate: make(chan struct{})}
		h := c.Middleware()(up)
		short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		leader := make(chan error, 1)
		go func() {
			_, err := h.ServeDNS(short, query{}.request(t))
			leader <- err
		}()
		waitFor(t, "the leader asks", func() bool { return up.calls.Load() == 1 })
		waiter := make(chan error, 1)
		go func() {
			m, err := h.ServeDNS(context.Background(), query{id: 5}.request(t))
			if err == nil && m.Id != 5 {
				err = errors.New("wrong id")
			}
			waiter <- err
		}()
		if err := <-leader; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("leader: %v, want its deadline", err)
		}
		waitFor(t, "the waiter asks again", func() bool { return up.calls.Load() == 2 })
		close(up.gate)
		if err := <-waiter; err != nil {
			t.Fatalf("waiter: %v", err)
		}
	})
	t.Run("a waiter whose time is up stops waiting", func(t *testing.T) {
		t.Parallel()
		c := newCache(t, Config{})
		up := &gated{gate: make(chan struct{})}
		h := c.Middleware()(up)
		leader := make(chan error, 1)
		go func() {
			_, err := h.ServeDNS(context.Background(), query{}.request(t))
			leader <- err
		}()
		waitFor(t, "the leader asks", func() bool { return up.calls.Load() == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := h.ServeDNS(ctx, query{}.request(t)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter: %v, want its deadline", err)
		}
		close(up.gate)
		if err := <-leader; err != nil {
			t.Fatalf("leader: %v", err)
		}
	})
}

// TestCoalescedOutcome: a query answered by an identical one's upstream
// answer gets that one's source and path, marked coalesced; a later hit
// is the cache's.
func TestCoalescedOutcome(t *testing.T) {
	t.Parallel()
	c := newCache(t, Config{})
	up := &gated{gate: make(chan struct{})}
	h := c.Middleware()(pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		m, err := up.ServeDNS(ctx, req)
		req.Outcome.Source, req.Outcome.Path = pipeline.SourceUpstream, "u/udp/192.0.2.1:53"
		return m, err
	}))
	leader, follower := query{id: 1}.request(t), query{id: 2}.request(t)
	follower.Outcome.Tenant = "acme" // set by a stage before the cache
	var wg sync.WaitGroup
	wg.Go(func() { h.ServeDNS(context.Background(), leader) })
	waitFor(t, "the leader in flight", func() bool { return c.waiters(t, follower) == 0 })
	wg.Go(func() { h.ServeDNS(context.Background(), follower) })
	waitFor(t, "the follower waiting", func() bool { return c.waiters(t, follower) == 1 })
	close(up.gate)
	wg.Wait()
	want := pipeline.Outcome{Source: pipeline.SourceUpstream, Path: "u/udp/192.0.2.1:53"}
	if leader.Outcome != want {
		t.Errorf("leader Outcome = %+v, want %+v", leader.Outcome, want)
	}
	want.Coalesced, want.Tenant = true, "acme"
	if follower.Outcome != want {
		t.Errorf("follower Outcome = %+v, want %+v", follower.Outcome, want)
	}
	hit := query{id: 3}.request(t)
	if _, err := h.ServeDNS(context.Background(), hit); err != nil {
		t.Fatal(err)
	}
	if want := (pipeline.Outcome{Source: pipeline.SourceCache}); hit.Outcome != want {
		t.Errorf("hit Outcome = %+v, want %+v", hit.Outcome, want)
	}
}
