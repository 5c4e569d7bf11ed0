package cache

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// TestEntryMemory measures what a cached answer costs on the heap: a
// CNAME and an A record with EDNS (benchReply), stored through the
// middleware as a miss stores it. It fails when an entry grows past the
// bound, and logs the figure and the cache's own estimate. It does not
// run in parallel: other tests' allocations would count.
func TestEntryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 50,000 entries")
	}
	const n = 50000
	c := newCache(t, Config{MaxEntries: 2 * n, MaxBytes: 1 << 30}) // room for uneven shards
	h := c.Middleware()(&fakeNext{t: t, serve: benchReply})
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = fmt.Sprintf("host-%d.example.org.", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, name := range reqs {
		if _, err := h.ServeDNS(context.Background(), benchRequest(name, uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.Len() != n {
		t.Fatalf("%d entries, want %d", c.Len(), n)
	}
	var estimate int64
	for i := range c.shards {
		estimate += c.shards[i].bytes.Load()
	}
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per entry; the byte bound counts %d", per, estimate/n)
	// A typical entry: about 90 bytes of message and 30 of key, the
	// entry struct and its map slot. The bound leaves room for the Go
	// runtime's rounding, not for a second copy of anything.
	if per > 290 {
		t.Errorf("%.0f bytes per entry, want at most 290", per)
	}
	runtime.KeepAlive(c)
}
