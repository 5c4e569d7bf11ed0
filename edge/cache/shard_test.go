package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

func serveName(t testing.TB, h pipeline.Handler, name string, id uint16) (*dns.Msg, error) {
	t.Helper()
	return h.ServeDNS(context.Background(), query{name: name, id: id}.request(t))
}

// answerAny answers every A query with one address for its name.
func answerAny(q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = []dns.RR{&dns.A{
		Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
		A:   []byte{192, 0, 2, 1},
	}}
	return m, nil
}

func TestEviction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxEntries int
		names      int
	}{
		{"one shard", 10, 100},
		{"few shards", 100, 2000},
		{"all shards", 1000, 20000},
		{"one entry", 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{MaxEntries: tt.maxEntries})
			h := c.Middleware()(&fakeNext{t: t, serve: answerAny})
			for i := range tt.names {
				if _, err := serveName(t, h, fmt.Sprintf("n%d.example.org.", i), 0); err != nil {
					t.Fatal(err)
				}
				if n := c.Len(); n > tt.maxEntries {
					t.Fatalf("after %d names: Len %d > MaxEntries %d", i+1, n, tt.maxEntries)
				}
			}
			var evicted uint64
			for i := range c.shards {
				evicted += c.shards[i].evictions.Load()
			}
			if got, want := uint64(c.Len())+evicted, uint64(tt.names); got != want {
				t.Fatalf("Len %d + evictions %d = %d, want %d", c.Len(), evicted, got, want)
			}
		})
	}
}

func TestEvictionIsLRU(t *testing.T) {
	t.Parallel()
	c := newCache(t, Config{MaxEntries: 3})
	next := &fakeNext{t: t, serve: answerAny}
	h := c.Middleware()(next)
	for _, n := range []string{"a.", "b.", "c.", "a.", "d."} { // d evicts b, the least recently used
		if _, err := serveName(t, h, n, 0); err != nil {
			t.Fatal(err)
		}
	}
	before := next.calls.Load()
	for _, n := range []string{"a.", "c.", "d."} {
		serveName(t, h, n, 0)
	}
	if calls := next.calls.Load() - before; calls != 0 {
		t.Fatalf("a, c, d: %d misses, want 0", calls)
	}
	serveName(t, h, "b.", 0)
	if calls := next.calls.Load() - before; calls != 1 {
		t.Fatalf("b: %d misses, want 1", calls)
	}
}

// TestConcurrent runs hits, misses, expiries and evictions from many
// goroutines; run it with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{MaxEntries: 64, Now: clk.Now})
	h := c.Middleware()(&fakeNext{t: t, serve: answerAny})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				name := fmt.Sprintf("n%d.example.org.", (g*7+i)%100)
				if i%3 == 0 {
					name = strings.ToUpper(name)
				}
				id := uint16(g<<12 | i)
				m, err := serveName(t, h, name, id)
				if err != nil {
					t.Error(err)
					return
				}
				if m.Id != id || m.Question[0].Name != name || !strings.EqualFold(m.Answer[0].Header().Name, name) {
					t.Errorf("asked %s id %d, got\n%v", name, id, m)
					return
				}
				if i%50 == 0 {
					clk.Advance(31 * time.Second)
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 64 {
		t.Fatalf("Len %d > 64", n)
	}
}

func TestShardSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		maxEntries, shards int
	}{
		{0, 64}, {1, 1}, {7, 1}, {16, 2}, {100, 8}, {511, 32}, {512, 64}, {100000, 64},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.maxEntries), func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{MaxEntries: tt.maxEntries})
			want := tt.maxEntries
			if want == 0 {
				want = DefaultMaxEntries
			}
			sum := 0
			for i := range c.shards {
				if c.shards[i].max < 1 {
					t.Fatalf("shard %d holds nothing", i)
				}
				sum += c.shards[i].max
			}
			if len(c.shards) != tt.shards || sum != want {
				t.Fatalf("%d shards holding %d, want %d holding %d", len(c.shards), sum, tt.shards, want)
			}
		})
	}
}

// TestLookupAsOfReceived: with the real clock a query is looked up as of
// when its listener read it; a clock of the caller's is always asked.
// The entry's shortest TTL is 300 s, and it is served stale for a day
// after.
func TestLookupAsOfReceived(t *testing.T) {
	t.Parallel()
	later := time.Now().Add(72 * time.Hour) // past the TTL and MaxStale
	fixed := func() time.Time { return time.Now() }
	tests := []struct {
		name     string
		now      func() time.Time // Config.Now
		spec     bool             // the Config from a Spec, as dnsedge serve makes it
		received time.Time
		wantHit  bool
	}{
		{"real clock, read now", nil, false, time.Now(), true},
		{"real clock, no read time", nil, false, time.Time{}, true},
		{"real clock, read after the TTL", nil, false, later, false},
		{"real clock from a Spec, read after the TTL", nil, true, later, false},
		{"own clock, read after the TTL", fixed, false, later, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{MaxEntries: 100, Now: tt.now}
			if tt.spec {
				cfg = Spec{MaxEntries: 100}.Config()
			}
			c := newCache(t, cfg)
			next := &fakeNext{t: t, serve: benchReply}
			h := c.Middleware()(next)
			if _, err := h.ServeDNS(context.Background(), benchRequest("a.example.org.", 1)); err != nil {
				t.Fatal(err)
			}
			req := benchRequest("a.example.org.", 2)
			req.Received = tt.received
			if _, err := h.ServeDNS(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if hit := next.calls.Load() == 1; hit != tt.wantHit {
				t.Fatalf("hit = %v (next asked %d times), want %v", hit, next.calls.Load(), tt.wantHit)
			}
		})
	}
}
