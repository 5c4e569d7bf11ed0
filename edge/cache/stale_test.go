package cache

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// switchable is an upstream whose behaviour a test changes between
// queries: answer with up, fail with err, or hang until the query's
// context ends (down).
type switchable struct {
	t     testing.TB
	mode  atomic.Value // upstream
	calls atomic.Int64
}

func newSwitchable(t testing.TB, up upstream) *switchable {
	s := &switchable{t: t}
	s.mode.Store(up)
	return s
}

func (s *switchable) set(up upstream) { s.mode.Store(up) }

func (s *switchable) serve(q *dns.Msg) (*dns.Msg, error) {
	s.calls.Add(1)
	return s.mode.Load().(upstream).reply(s.t, q)
}

// ede returns the Extended DNS Error codes in m's OPT record.
func ede(m *dns.Msg) []uint16 {
	var out []uint16
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				out = append(out, e.InfoCode)
			}
		}
	}
	return out
}

type staleStep struct {
	advance time.Duration
	up      *upstream // switch the upstream before the query
	// want: "fresh" (answer from next or a fresh hit), "stale" (EDE 3,
	// TTL StaleTTL), "error" (next's error), "servfail" (next's SERVFAIL
	// reply).
	want  string
	asked bool // whether next is asked (synchronously)
}

// TestServeStale walks entries past their TTL with the upstream failing in
// the ways RFC 8767 covers.
func TestServeStale(t *testing.T) {
	t.Parallel()
	ok := upstream{answer: []string{aWWW}}
	down := upstream{err: errUpDown}
	servfail := upstream{rcode: dns.RcodeServerFailure}
	refused := upstream{rcode: dns.RcodeRefused}
	nx := upstream{rcode: dns.RcodeNameError, ns: []string{soa("60", "60")}}
	p := func(u upstream) *upstream { return &u }
	tests := []struct {
		name  string
		cfg   Config
		first upstream
		steps []staleStep
	}{
		{"failed refresh serves stale, then waits FailureRecheck", Config{}, ok, []staleStep{
			{want: "fresh", asked: true},
			{advance: 300 * time.Second, up: p(down), want: "stale", asked: true},
			{advance: 29 * time.Second, want: "stale"},
			{advance: time.Second, want: "stale", asked: true},
			{up: p(ok), advance: 30 * time.Second, want: "fresh", asked: true},
			{want: "fresh"},
		}},
		{"SERVFAIL and REFUSED refreshes serve stale", Config{FailureRecheck: time.Second}, ok, []staleStep{
			{want: "fresh", asked: true},
			{advance: 301 * time.Second, up: p(servfail), want: "stale", asked: true},
			{advance: time.Second, up: p(refused), want: "stale", asked: true},
		}},
		{"negative answers are served stale too", Config{}, nx, []staleStep{
			{want: "fresh", asked: true},
			{advance: 61 * time.Second, up: p(down), want: "stale", asked: true},
		}},
		{"nothing past MaxStale", Config{MaxStale: time.Hour}, ok, []staleStep{
			{want: "fresh", asked: true},
			{advance: 300*time.Second + time.Hour - time.Second, up: p(down), want: "stale", asked: true},
			{advance: time.Second, want: "error", asked: true},
		}},
		{"DisableStale", Config{DisableStale: true}, ok, []staleStep{
			{want: "fresh", asked: true},
			{advance: 300 * time.Second, up: p(down), want: "error", asked: true},
		}},
		{"SERVFAIL entries are never stale", Config{ServfailTTL: 5 * time.Second}, servfail, []staleStep{
			{want: "servfail", asked: true},
			{advance: 4 * time.Second, want: "servfail"},
			{advance: time.Second, up: p(down), want: "error", asked: true},
		}},
		{"a failed refresh does not replace the stale entry with SERVFAIL", Config{ServfailTTL: time.Minute, FailureRecheck: time.Second}, ok, []staleStep{
			{want: "fresh", asked: true},
			{advance: 300 * time.Second, up: p(servfail), want: "stale", asked: true},
			{advance: time.Second, want: "stale", asked: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			tt.cfg.Now = clk.Now
			c := newCache(t, tt.cfg)
			t.Cleanup(func() { c.Close() })
			up := newSwitchable(t, tt.first)
			h := c.Middleware()(&fakeNext{t: t, serve: up.serve})
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				if st.up != nil {
					up.set(*st.up)
				}
				before := up.calls.Load()
				m, err := h.ServeDNS(testCtx(t), query{do: true, id: uint16(i)}.request(t))
				if asked := up.calls.Load() != before; asked != st.asked {
					t.Fatalf("step %d: asked = %v, want %v", i, asked, st.asked)
				}
				switch st.want {
				case "error":
					if !errors.Is(err, errUpDown) {
						t.Fatalf("step %d: got %v, %v; want the upstream's error", i, m, err)
					}
					continue
				case "servfail":
					if err != nil || m.Rcode != dns.RcodeServerFailure {
						t.Fatalf("step %d: got %v, %v; want SERVFAIL", i, m, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if m.Id != uint16(i) {
					t.Errorf("step %d: ID %d", i, m.Id)
				}
				isStale := slices.Contains(ede(m), dns.ExtendedErrorCodeStaleAnswer)
				if isStale != (st.want == "stale") {
					t.Fatalf("step %d: EDE %v, want %s", i, ede(m), st.want)
				}
				if isStale {
					for _, ttl := range ttls(m) {
						if ttl != uint32(DefaultStaleTTL/time.Second) {
							t.Errorf("step %d: stale TTLs %v, want all %d", i, ttls(m), DefaultStaleTTL/time.Second)
						}
					}
				}
			}
		})
	}
}

// TestStaleClientTimeout: an upstream that does not answer within
// ClientTimeout gets the stale answer sent, and its late answer still
// refreshes the entry.
func TestStaleClientTimeout(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now, ClientTimeout: 20 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	up := &gated{gate: make(chan struct{})}
	close(up.gate)
	h := c.Middleware()(up)
	if _, err := h.ServeDNS(testCtx(t), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	up.gate = make(chan struct{}) // hold the refresh
	clk.Advance(time.Hour)
	start := time.Now()
	m, err := h.ServeDNS(testCtx(t), query{}.request(t))
	if err != nil || !slices.Contains(ede(m), dns.ExtendedErrorCodeStaleAnswer) {
		t.Fatalf("got %v, %v; want a stale answer", m, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stale answer after %s", d)
	}
	// More queries meanwhile join the one refresh.
	for range 5 {
		if m, err := h.ServeDNS(testCtx(t), query{}.request(t)); err != nil || len(ede(m)) == 0 {
			t.Fatalf("got %v, %v; want a stale answer", m, err)
		}
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("%d upstream queries, want 2 (fill, one refresh)", n)
	}
	close(up.gate)
	waitFor(t, "the refresh to finish", func() bool { return c.waiters(t, query{}.request(t)) == -1 })
	// Those answered stale were not answered by the refresh.
	var coalesced uint64
	for i := range c.shards {
		coalesced += c.shards[i].coalesced.Load()
	}
	if coalesced != 0 {
		t.Errorf("coalesced = %d, want 0: stale answers are not coalesced ones", coalesced)
	}
	m, err = h.ServeDNS(testCtx(t), query{}.request(t))
	if err != nil || len(ede(m)) != 0 {
		t.Fatalf("after the refresh: %v, %v; want a fresh answer", m, err)
	}
}

// TestStaleWhileRevalidate: inside the window an expired entry is answered
// at once and refreshed in the background, once per key.
func TestStaleWhileRevalidate(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now, StaleWhileRevalidate: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	up := &gated{gate: make(chan struct{})}
	close(up.gate)
	h := c.Middleware()(up)
	if _, err := h.ServeDNS(testCtx(t), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	up.gate = make(chan struct{})
	clk.Advance(305 * time.Second) // 5s past the TTL of 300
	for range 10 {
		m, err := h.ServeDNS(testCtx(t), query{}.request(t))
		if err != nil || !slices.Contains(ede(m), dns.ExtendedErrorCodeStaleAnswer) {
			t.Fatalf("got %v, %v; want a stale answer at once", m, err)
		}
	}
	waitFor(t, "one background refresh", func() bool { return up.calls.Load() == 2 })
	close(up.gate)
	waitFor(t, "the refresh to land", func() bool {
		m, err := h.ServeDNS(testCtx(t), query{}.request(t))
		return err == nil && len(ede(m)) == 0
	})
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("%d upstream queries, want 2", n)
	}
	// Past the window the refresh comes first again.
	clk.Advance(320 * time.Second)
	before := up.calls.Load()
	m, err := h.ServeDNS(testCtx(t), query{}.request(t))
	if err != nil || len(ede(m)) != 0 || up.calls.Load() != before+1 {
		t.Fatalf("got %v, %v after %d queries; want a fresh answer from a refresh", m, err, up.calls.Load()-before)
	}
}

// TestPrefetch: a popular entry is refreshed before it expires; an
// unpopular one is not.
func TestPrefetch(t *testing.T) {
	t.Parallel()
	clk := newClock()
	reg := prometheus.NewRegistry()
	c, err := New(Config{Now: clk.Now}, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		return upstream{answer: []string{"www.example.org. 100 IN A 192.0.2.1", "www.example.org. 100 IN A 192.0.2.2"}}.reply(t, q)
	}}
	h := c.Middleware()(next)
	ask := func(name string) {
		t.Helper()
		if _, err := h.ServeDNS(testCtx(t), query{name: name}.request(t)); err != nil {
			t.Fatal(err)
		}
	}
	ask("www.example.org.")
	ask("cold.example.org.")
	ask("www.example.org.")
	ask("www.example.org.")
	clk.Advance(91 * time.Second)
	ask("cold.example.org.") // first hit: not popular
	if n := next.calls.Load(); n != 2 {
		t.Fatalf("%d upstream queries before the prefetch, want 2", n)
	}
	ask("www.example.org.")
	waitFor(t, "the prefetch", func() bool { return gather(t, reg)["dnsedge_cache_prefetches_total"] == 1 })
	waitFor(t, "the prefetched entry", func() bool {
		c.bg.Wait()
		return true
	})
	clk.Advance(20 * time.Second) // the old entry would have expired
	before := next.calls.Load()
	ask("www.example.org.")
	if next.calls.Load() != before {
		t.Fatal("the prefetched entry was not used")
	}
}

// TestMaxBytes: the byte bound evicts like the entry bound.
func TestMaxBytes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c, err := New(Config{MaxEntries: 8, MaxBytes: 1200}, reg) // one shard
	if err != nil {
		t.Fatal(err)
	}
	next := &fakeNext{t: t, serve: answerAny}
	h := c.Middleware()(next)
	for i := range 100 {
		if _, err := serveName(t, h, nameN(i), uint16(i)); err != nil {
			t.Fatal(err)
		}
	}
	m := gather(t, reg)
	if b := m["dnsedge_cache_bytes"]; b > 1200 || b == 0 {
		t.Errorf("bytes = %v, want in (0, 1200]", b)
	}
	if n := m["dnsedge_cache_entries"]; n >= 8 || n == 0 {
		t.Errorf("entries = %v, want fewer than the 8 the entry bound allows", n)
	}
	if m["dnsedge_cache_evictions_total"] == 0 {
		t.Error("no evictions counted")
	}
	// The most recent name is still there. Its first hit keeps a
	// template, which counts against the bound too.
	calls := next.calls.Load()
	if _, err := serveName(t, h, nameN(99), 1); err != nil || next.calls.Load() != calls {
		t.Errorf("last name: %v, next called %d times; want a hit", err, next.calls.Load()-calls)
	}
	if b := gather(t, reg)["dnsedge_cache_bytes"]; b > 1200 {
		t.Errorf("bytes after a hit = %v, want at most 1200", b)
	}
}

func nameN(i int) string {
	return "n" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example.org."
}

// TestCloseStopsRefreshes: Close cancels a refresh in flight and waits for
// it; afterwards stale entries are still answered.
func TestCloseStopsRefreshes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now, StaleWhileRevalidate: time.Minute})
	up := &gated{gate: make(chan struct{})}
	close(up.gate)
	h := c.Middleware()(up)
	if _, err := h.ServeDNS(testCtx(t), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	up.gate = make(chan struct{}) // never opens: only cancellation ends it
	clk.Advance(301 * time.Second)
	if _, err := h.ServeDNS(testCtx(t), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refresh to start", func() bool { return up.calls.Load() == 2 })
	c.Close()
	if n := c.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes still running after Close", n)
	}
	m, err := h.ServeDNS(testCtx(t), query{}.request(t))
	if err != nil || len(ede(m)) == 0 {
		t.Fatalf("after Close: %v, %v; want a stale answer", m, err)
	}
}

// testCtx bounds a query of a test, so that a broken cache fails the test
// instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestConcurrentStaleLoad drives every path at once under the race
// detector: hits, misses, coalescing, prefetch, stale answers, background
// refreshes and stale-while-revalidate, with a clock that moves and an
// upstream that fails now and then. Every query gets an answer for its
// own name and ID.
func TestConcurrentStaleLoad(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{
		MaxEntries: 64, MaxBytes: 16 << 10, Now: clk.Now,
		ClientTimeout: 5 * time.Millisecond, FailureRecheck: 2 * time.Second,
		StaleWhileRevalidate: 3 * time.Second, MaxStale: time.Minute,
	})
	t.Cleanup(func() { c.Close() })
	var n atomic.Int64
	next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		switch n.Add(1) % 7 {
		case 0:
			return nil, errUpDown
		case 1:
			return upstream{rcode: dns.RcodeServerFailure}.reply(t, q)
		}
		return upstream{answer: []string{q.Question[0].Name + " 20 IN A 192.0.2.1"}}.reply(t, q)
	}}
	h := c.Middleware()(next)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				name := fmt.Sprintf("n%d.example.org.", (g*5+i)%40)
				id := uint16(g<<12 | i)
				req := query{name: name, id: id, do: i%2 == 0}.request(t)
				if i%4 == 0 {
					req.ECS = netip.MustParsePrefix("198.51.100.0/24")
				}
				m, err := h.ServeDNS(testCtx(t), req)
				if err != nil {
					if !errors.Is(err, errUpDown) {
						t.Error(err)
					}
					continue
				}
				if m.Id != id || m.Question[0].Name != name {
					t.Errorf("asked %s id %d, got\n%v", name, id, m)
					return
				}
				if i%40 == 0 {
					clk.Advance(7 * time.Second)
				}
			}
		})
	}
	wg.Wait()
	c.Close()
	if n := c.Len(); n > 64 {
		t.Fatalf("Len %d > 64", n)
	}
	var b int64
	for i := range c.shards {
		b += c.shards[i].bytes.Load()
	}
	if b > 16<<10 {
		t.Fatalf("%d bytes > 16 KiB", b)
	}
}

func TestStaleFailedReason(t *testing.T) {
	t.Parallel()
	servfail, refused := new(dns.Msg), new(dns.Msg)
	servfail.Rcode, refused.Rcode = dns.RcodeServerFailure, dns.RcodeRefused
	tests := []struct {
		name  string
		reply *dns.Msg
		err   error
		want  string
	}{
		{"SERVFAIL reply", servfail, nil, staleServfail},
		{"REFUSED reply", refused, nil, staleRefused},
		{"refresh ran out of time", nil, context.DeadlineExceeded, staleTimeout},
		{"every path timed out", nil, fmt.Errorf("cache: %w", &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority}), staleTimeout},
		{"network refused", nil, &pipeline.Error{EDE: dns.ExtendedErrorCodeNetworkError}, staleUnreachable},
		{"anything else", nil, errors.New("boom"), staleFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := staleFailed(tt.reply, tt.err); got != tt.want {
				t.Errorf("staleFailed = %q, want %q", got, tt.want)
			}
		})
	}
}
