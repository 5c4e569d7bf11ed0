package cache

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"
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
	// A typical entry: about 90 bytes of message and 30 of key in one
	// allocation, the 80-byte entry struct and its index slots (185
	// bytes measured). The bound leaves room for the index's growth
	// steps, not for a second copy of anything or a larger struct.
	if per > 200 {
		t.Errorf("%.0f bytes per entry, want at most 200", per)
	}
	runtime.KeepAlive(c)
}

// TestEntryLayout checks that the entry struct stays in its 80-byte size
// class and that newEntry lays out what the accessors read back.
func TestEntryLayout(t *testing.T) {
	t.Parallel()
	if got := unsafe.Sizeof(entry{}); got > 80 {
		t.Errorf("entry is %d bytes, want at most 80", got)
	}
	tests := []struct {
		name     string
		key, msg []byte
		offs     []uint16
	}{
		{"empty", nil, nil, nil},
		{"failure: key only", []byte("\x01a\x00\x00\x01\x00\x01\x00"), nil, nil},
		{"odd key and message", []byte("\x01a\x00\x00\x01\x00\x01\x00k"), []byte("message"), []uint16{30, 46}},
		{"even lengths", []byte("ke"), []byte("ms"), []uint16{7}},
		{"message without offsets", []byte("key"), []byte("msg"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEntry(tt.key, tt.msg, tt.offs, time.Unix(1, 0), 60, 0)
			if e.key() != string(tt.key) || !bytes.Equal(e.msg(), tt.msg) || !slices.Equal(e.ttls(), tt.offs) {
				t.Errorf("got key %q, msg %q, ttls %v", e.key(), e.msg(), e.ttls())
			}
			if m := e.msg(); cap(m) != len(m) {
				t.Errorf("msg has spare capacity %d", cap(m)-len(m))
			}
			if want := 2*int64(len(tt.offs)+(len(tt.key)+len(tt.msg)+1)/2) + entryOverhead; e.size() != want {
				t.Errorf("size %d, want %d", e.size(), want)
			}
		})
	}
	if e := newEntry(make([]byte, maxKeyLen+1), nil, nil, time.Unix(1, 0), 60, 0); e != nil {
		t.Error("an entry with a key longer than maxKeyLen was made")
	}
}
