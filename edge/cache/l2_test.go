package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/cache/l2"
	"github.com/dnsedge/dnsedge/edge/pipeline"
)

var testFleetKey = []byte("0123456789abcdef0123456789abcdef")

// fakeShared is a Shared kept in memory, with values sealed and opened
// as the Redis store does. Lookups wait for hold when it is set; err,
// when set, is every lookup's error; skip makes Budget say the breaker
// is open.
type fakeShared struct {
	sealer  *l2.Sealer
	budget  time.Duration
	skip    bool
	err     error
	hold    chan struct{}
	mu      sync.Mutex
	data    map[string][]byte
	ex      map[string]time.Duration
	lookups atomic.Int64
	puts    atomic.Int64
}

func newFakeShared() *fakeShared {
	return &fakeShared{sealer: l2.NewSealer(testFleetKey), budget: 2 * time.Millisecond,
		data: make(map[string][]byte), ex: make(map[string]time.Duration)}
}

func (f *fakeShared) Budget() (time.Duration, bool) { return f.budget, !f.skip }
func (f *fakeShared) KeyPrefix() string             { return l2.KeyPrefix("test", "off") }

func (f *fakeShared) Lookup(question []byte, keys []string) <-chan l2.Result {
	f.lookups.Add(1)
	out := make(chan l2.Result, 1)
	go func() {
		if f.hold != nil {
			<-f.hold
		}
		if f.err != nil {
			out <- l2.Result{Err: f.err}
			return
		}
		vals := make([]l2.Value, len(keys))
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, k := range keys {
			if b, ok := f.data[k]; ok {
				if v, err := f.sealer.Open(k, question, b); err == nil {
					vals[i] = v
				}
			}
		}
		out <- l2.Result{Values: vals}
	}()
	return out
}

func (f *fakeShared) Put(key string, v l2.Value, ex time.Duration) {
	f.puts.Add(1)
	f.mu.Lock()
	f.data[key] = f.sealer.Seal(key, v)
	f.ex[key] = ex
	f.mu.Unlock()
}

// upstreamNext answers every query from "the upstream" (answerAny, or
// reply when set), recording SourceUpstream as the forward handler does,
// and counts the calls. With block set it waits for ctx to end and
// returns its error.
type upstreamNext struct {
	calls atomic.Int64
	reply func(req *pipeline.Request) (*dns.Msg, error)
	block bool
	src   pipeline.Source
}

func (u *upstreamNext) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	u.calls.Add(1)
	if u.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	req.Outcome.Source = pipeline.SourceUpstream
	if u.src != pipeline.SourceNone {
		req.Outcome.Source = u.src
	}
	if u.reply != nil {
		return u.reply(req)
	}
	return answerAny(req.Msg)
}

// ecsReply answers with an ECS option of the given scope for the
// query's subnet.
func ecsReply(scope int) func(req *pipeline.Request) (*dns.Msg, error) {
	return func(req *pipeline.Request) (*dns.Msg, error) {
		m, _ := answerAny(req.Msg)
		if !req.ECS.IsValid() {
			return m, nil
		}
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
			Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(req.ECS.Bits()),
			SourceScope: uint8(scope), Address: req.ECS.Masked().Addr().AsSlice(),
		})
		m.Extra = append(m.Extra, opt)
		return m, nil
	}
}

// l2query is a query with the tenant the zone stage would have set.
type l2query struct {
	query
	tenant string
}

func (q l2query) request(t testing.TB) *pipeline.Request {
	r := q.query.request(t)
	r.Outcome.Tenant = q.tenant
	return r
}

// TestL2KeySeparation checks that an answer one instance stored in the
// shared cache answers another instance's query only when every part of
// the key agrees: no answer crosses tenants, DO, CD, routes, qtypes or
// ECS scopes.
func TestL2KeySeparation(t *testing.T) {
	t.Parallel()
	base := l2query{tenant: "team-a"}
	tests := []struct {
		name  string
		scope int // ECS scope of the upstream's answer
		first l2query
		then  l2query
		hit   bool
	}{
		{"same query", 0, base, base, true},
		{"name in another case", 0, base, l2query{query{name: "WWW.Example.ORG."}, "team-a"}, true},
		{"another tenant", 0, base, l2query{tenant: "team-b"}, false},
		{"no tenant", 0, base, l2query{}, false},
		{"DO set", 0, base, l2query{query{do: true}, "team-a"}, false},
		{"DO cleared", 0, l2query{query{do: true}, "team-a"}, base, false},
		{"CD set", 0, base, l2query{query{cd: true}, "team-a"}, false},
		{"CD cleared", 0, l2query{query{cd: true}, "team-a"}, base, false},
		{"another route", 0, l2query{query{route: "r1"}, "team-a"}, l2query{query{route: "r2"}, "team-a"}, false},
		{"another qtype", 0, base, l2query{query{qtype: dns.TypeAAAA}, "team-a"}, false},
		{"ECS scope 24, same /24", 24, l2query{query{ecs: "198.51.100.7/24"}, "t"}, l2query{query{ecs: "198.51.100.9/24"}, "t"}, true},
		{"ECS scope 24, other /24", 24, l2query{query{ecs: "198.51.100.7/24"}, "t"}, l2query{query{ecs: "198.51.101.7/24"}, "t"}, false},
		{"ECS scope 24, no ECS", 24, l2query{query{ecs: "198.51.100.7/24"}, "t"}, l2query{tenant: "t"}, false},
		{"ECS scope 0 covers every subnet", 0, l2query{query{ecs: "198.51.100.7/24"}, "t"}, l2query{query{ecs: "203.0.113.7/24"}, "t"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shared := newFakeShared()
			upA := &upstreamNext{reply: ecsReply(tt.scope)}
			upB := &upstreamNext{reply: ecsReply(tt.scope)}
			a := newCache(t, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(upA)
			b := newCache(t, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(upB)
			if _, err := a.ServeDNS(context.Background(), tt.first.request(t)); err != nil {
				t.Fatal(err)
			}
			if shared.puts.Load() != 1 {
				t.Fatalf("%d writes to the shared cache, want 1", shared.puts.Load())
			}
			req := tt.then.request(t)
			m, err := b.ServeDNS(context.Background(), req)
			if err != nil || m == nil {
				t.Fatalf("ServeDNS: %v, %v", m, err)
			}
			if hit := upB.calls.Load() == 0; hit != tt.hit {
				t.Fatalf("L2 hit %v, want %v", hit, tt.hit)
			}
			if tt.hit {
				if req.Outcome.Source != pipeline.SourceCache {
					t.Errorf("source %v, want cache", req.Outcome.Source)
				}
				if m.Question[0].Name != req.Msg.Question[0].Name || m.Id != req.Msg.Id {
					t.Errorf("answer question %q id %d, want the query's %q %d", m.Question[0].Name, m.Id, req.Msg.Question[0].Name, req.Msg.Id)
				}
				// The hit filled the local cache: asked again, B
				// answers without the shared cache.
				n := shared.lookups.Load()
				if _, err := b.ServeDNS(context.Background(), tt.then.request(t)); err != nil {
					t.Fatal(err)
				}
				if shared.lookups.Load() != n || upB.calls.Load() != 0 {
					t.Error("a second query after the L2 hit left the local cache")
				}
				if shared.puts.Load() != 1 {
					t.Errorf("an L2 hit was written back: %d writes", shared.puts.Load())
				}
			}
		})
	}
}

// TestL2NotStored checks which answers never reach the shared cache.
func TestL2NotStored(t *testing.T) {
	t.Parallel()
	answer := func(mod func(m *dns.Msg)) func(req *pipeline.Request) (*dns.Msg, error) {
		return func(req *pipeline.Request) (*dns.Msg, error) {
			m, _ := answerAny(req.Msg)
			mod(m)
			return m, nil
		}
	}
	tests := []struct {
		name  string
		next  *upstreamNext
		store bool
	}{
		{"upstream answer", &upstreamNext{}, true},
		{"truncated", &upstreamNext{reply: answer(func(m *dns.Msg) { m.Truncated = true })}, false},
		{"TTL 0", &upstreamNext{reply: answer(func(m *dns.Msg) { m.Answer[0].Header().Ttl = 0 })}, false},
		{"SERVFAIL", &upstreamNext{reply: answer(func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure; m.Answer = nil })}, false},
		{"zone answer", &upstreamNext{src: pipeline.SourceZone}, false},
		{"tenant zone answer", &upstreamNext{src: pipeline.SourceTenantZone}, false},
		{"policy answer", &upstreamNext{src: pipeline.SourcePolicy}, false},
		{"synthesized answer", &upstreamNext{src: pipeline.SourceSynthesized}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shared := newFakeShared()
			h := newCache(t, Config{L2: shared, Clock: clockwork.NewFakeClock(), ServfailTTL: time.Minute}).Middleware()(tt.next)
			if _, err := h.ServeDNS(context.Background(), query{}.request(t)); err != nil {
				t.Fatal(err)
			}
			if got := shared.puts.Load() == 1; got != tt.store {
				t.Errorf("stored %v, want %v", got, tt.store)
			}
		})
	}
}

// TestL2TTLShrink checks that an answer read from the shared cache has
// its TTLs lowered by the time since it was first stored, that its
// expiry in Redis is the TTL plus the stale window, and that an answer
// past its TTL is not served fresh.
func TestL2TTLShrink(t *testing.T) {
	t.Parallel()
	clk := newClock()
	shared := newFakeShared()
	cfg := Config{L2: shared, Now: clk.Now, MaxStale: time.Hour, Clock: clockwork.NewFakeClock()}
	a := newCache(t, cfg).Middleware()(&upstreamNext{})
	if _, err := a.ServeDNS(context.Background(), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	for k, ex := range shared.ex {
		if want := 300*time.Second + time.Hour; ex != want {
			t.Errorf("EX of %q is %s, want %s", k, ex, want)
		}
	}
	clk.Advance(100 * time.Second)
	upB := &upstreamNext{}
	b := newCache(t, cfg)
	m, err := b.Middleware()(upB).ServeDNS(context.Background(), query{}.request(t))
	if err != nil || upB.calls.Load() != 0 {
		t.Fatalf("want an L2 hit: %v, %d upstream calls", err, upB.calls.Load())
	}
	if got := ttls(m); len(got) != 1 || got[0] != 200 {
		t.Errorf("TTLs %v, want [200]", got)
	}
	// Past its TTL: the upstream is asked, the stale value is kept
	// locally for serve-stale.
	clk.Advance(250 * time.Second)
	upC := &upstreamNext{}
	c := newCache(t, cfg)
	if _, err := c.Middleware()(upC).ServeDNS(context.Background(), query{}.request(t)); err != nil {
		t.Fatal(err)
	}
	if upC.calls.Load() != 1 || c.l2staleSeeds.Load() != 1 {
		t.Errorf("expired value: %d upstream calls, %d stale seeds, want 1 and 1", upC.calls.Load(), c.l2staleSeeds.Load())
	}
}

// TestL2BudgetRace checks the race between the shared cache and the
// upstream on a fake clock: the query never waits past the budget for
// the shared cache, and the first valid answer wins.
func TestL2BudgetRace(t *testing.T) {
	t.Parallel()
	const budget = 2 * time.Millisecond
	tests := []struct {
		name string
		// stored puts the answer in the shared cache first.
		stored bool
		// slow holds lookups until the budget has passed; release lets
		// them answer after that, while the upstream still waits.
		slow, release bool
		err           error
		skip          bool
		blockUpstream bool
		wantUpstream  int64
		wantLookups   int64
		wantHit       bool
		wantLate      uint64
	}{
		{name: "hit in time", stored: true, wantLookups: 1, wantHit: true},
		{name: "miss in time asks upstream at once", wantUpstream: 1, wantLookups: 1},
		{name: "error asks upstream at once", err: errors.New("connection refused"), wantUpstream: 1, wantLookups: 1},
		{name: "breaker open skips the lookup", stored: true, skip: true, wantUpstream: 1},
		{name: "slow: upstream after the budget", stored: true, slow: true, wantUpstream: 1, wantLookups: 1, wantLate: 1},
		{name: "slow hit beats a slower upstream", stored: true, slow: true, release: true, blockUpstream: true, wantUpstream: 1, wantLookups: 1, wantHit: true, wantLate: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shared := newFakeShared()
			shared.budget, shared.err, shared.skip = budget, tt.err, tt.skip
			if tt.stored {
				w := newCache(t, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(&upstreamNext{})
				if _, err := w.ServeDNS(context.Background(), query{}.request(t)); err != nil {
					t.Fatal(err)
				}
				shared.lookups.Store(0)
			}
			hold := make(chan struct{})
			if tt.slow {
				shared.hold = hold
			}
			defer func() {
				if tt.slow && !tt.release {
					close(hold)
				}
			}()
			clk := clockwork.NewFakeClock()
			up := &upstreamNext{block: tt.blockUpstream}
			c := newCache(t, Config{L2: shared, Clock: clk})
			h := c.Middleware()(up)
			type result struct {
				m   *dns.Msg
				err error
				src pipeline.Source
			}
			done := make(chan result, 1)
			go func() {
				req := query{}.request(t)
				m, err := h.ServeDNS(context.Background(), req)
				done <- result{m, err, req.Outcome.Source}
			}()
			if tt.slow {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := clk.BlockUntilContext(ctx, 1); err != nil {
					t.Fatal("the query never waited for the budget")
				}
				select {
				case <-done:
					t.Fatal("answered before the budget passed or the lookup answered")
				default:
				}
				clk.Advance(budget)
				if tt.release {
					// The upstream is now asked and blocks; the
					// lookup's late answer must cancel it.
					for up.calls.Load() == 0 {
						time.Sleep(time.Millisecond)
					}
					close(hold)
				}
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer")
			}
			if r.err != nil || r.m == nil || r.m.Rcode != dns.RcodeSuccess {
				t.Fatalf("answer %v, %v", r.m, r.err)
			}
			if got := up.calls.Load(); got != tt.wantUpstream {
				t.Errorf("%d upstream calls, want %d", got, tt.wantUpstream)
			}
			if got := shared.lookups.Load(); got != tt.wantLookups {
				t.Errorf("%d lookups, want %d", got, tt.wantLookups)
			}
			if hit := r.src == pipeline.SourceCache; hit != tt.wantHit {
				t.Errorf("source %v: hit %v, want %v", r.src, hit, tt.wantHit)
			}
			if c.l2late.Load() != tt.wantLate {
				t.Errorf("budget exceeded %d times, want %d", c.l2late.Load(), tt.wantLate)
			}
		})
	}
}

// TestL2LocalHitSkipsShared checks that only a local miss asks the
// shared cache.
func TestL2LocalHitSkipsShared(t *testing.T) {
	t.Parallel()
	shared := newFakeShared()
	h := newCache(t, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(&upstreamNext{})
	for range 3 {
		if _, err := h.ServeDNS(context.Background(), query{}.request(t)); err != nil {
			t.Fatal(err)
		}
	}
	if shared.lookups.Load() != 1 {
		t.Errorf("%d lookups for one miss and two local hits, want 1", shared.lookups.Load())
	}
}

// TestL2RefreshKeepsTenant checks that a background refresh writes its
// answer under the tenant of the query that started it.
func TestL2RefreshKeepsTenant(t *testing.T) {
	t.Parallel()
	clk := newClock()
	shared := newFakeShared()
	c := newCache(t, Config{L2: shared, Now: clk.Now, Clock: clockwork.NewFakeClock(), StaleWhileRevalidate: time.Hour})
	h := c.Middleware()(&upstreamNext{})
	q := l2query{tenant: "team-a"}
	if _, err := h.ServeDNS(context.Background(), q.request(t)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(301 * time.Second)
	req := q.request(t)
	if _, err := h.ServeDNS(context.Background(), req); err != nil || req.Outcome.Source != pipeline.SourceStale {
		t.Fatalf("want a stale answer and a refresh behind it: %v, %v", req.Outcome.Source, err)
	}
	c.Close() // waits for the refresh
	if shared.puts.Load() != 2 || len(shared.data) != 1 {
		t.Fatalf("%d writes under %d keys, want 2 under the tenant's one key", shared.puts.Load(), len(shared.data))
	}
	for k := range shared.data {
		if !strings.Contains(k, "team-a") {
			t.Errorf("key %q lacks the tenant", k)
		}
	}
}

// TestL2LocalHitAllocs checks that a shared cache costs a local hit
// nothing: the same allocations as without one.
func TestL2LocalHitAllocs(t *testing.T) {
	allocs := func(cfg Config) float64 {
		h := newCache(t, cfg).Middleware()(&upstreamNext{})
		req := query{}.request(t)
		if _, err := h.ServeDNS(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(200, func() {
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		})
	}
	without := allocs(Config{})
	with := allocs(Config{L2: newFakeShared(), Clock: clockwork.NewFakeClock()})
	if with != without {
		t.Errorf("a local hit allocates %v times with a shared cache, %v without", with, without)
	}
}
