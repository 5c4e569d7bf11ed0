package cache

import (
	"context"
	"fmt"
	"testing"

	"github.com/jonboulle/clockwork"
)

// BenchmarkL2Hit measures a local miss answered from the shared cache (an
// in-memory fake: this is the cache's own cost, Redis's round trip
// aside), from the query to the answer stored locally. Compare with
// BenchmarkCacheHit and BenchmarkCacheMiss.
func BenchmarkL2Hit(b *testing.B) {
	const names = 4096
	shared := newFakeShared()
	w := newCache(b, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(&upstreamNext{})
	ctx := context.Background()
	reqs := make([]string, names)
	for i := range reqs {
		reqs[i] = fmt.Sprintf("n%d.example.org.", i)
		if _, err := w.ServeDNS(ctx, benchRequest(reqs[i], 1)); err != nil {
			b.Fatal(err)
		}
	}
	up := &upstreamNext{}
	var h = newCache(b, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(up)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == names {
			// Every name is now a local hit: start a cache afresh.
			b.StopTimer()
			h, i = newCache(b, Config{L2: shared, Clock: clockwork.NewFakeClock()}).Middleware()(up), 0
			b.StartTimer()
		}
		if _, err := h.ServeDNS(ctx, benchRequest(reqs[i], 1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if n := up.calls.Load(); n != 0 {
		b.Fatalf("the upstream was asked %d times, want never", n)
	}
}
