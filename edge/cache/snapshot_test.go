package cache

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fill answers q through a cache on clk, from an upstream that answers
// up, so that the answer is cached.
func fill(t *testing.T, c *Cache, q query, up upstream) {
	t.Helper()
	next := &fakeNext{t: t, serve: func(m *dns.Msg) (*dns.Msg, error) { return up.reply(t, m) }}
	if _, err := c.Middleware()(next).ServeDNS(context.Background(), q.request(t)); err != nil {
		t.Fatal(err)
	}
}

// ask answers q from c alone: an upstream call fails the test.
func ask(t *testing.T, c *Cache, q query) *dns.Msg {
	t.Helper()
	next := &fakeNext{t: t}
	m, err := c.Middleware()(next).ServeDNS(context.Background(), q.request(t))
	if err != nil {
		t.Fatalf("%s: %v", q.name, err)
	}
	return m
}

// TestRecordsRestore: entries taken from one cache and restored into
// another on another clock answer as hits with the TTL they had left,
// less the time spent between the two, in the partitions (route, ECS
// scope) they were stored in; an entry expired by then is gone.
func TestRecordsRestore(t *testing.T) {
	oldClk, newClk := newClock(), newClock()
	newClk.Advance(1000 * time.Hour) // another process, another clock
	src := newCache(t, Config{Now: oldClk.Now})
	a := upstream{answer: []string{"www.example.org. 300 IN A 192.0.2.1"}}
	short := upstream{answer: []string{"short.example.org. 20 IN A 192.0.2.2"}}
	fill(t, src, query{name: "www.example.org."}, a)
	fill(t, src, query{name: "www.example.org.", route: "blue"}, upstream{answer: []string{"www.example.org. 300 IN A 192.0.2.9"}})
	fill(t, src, query{name: "short.example.org."}, short)
	oldClk.Advance(100 * time.Second)
	recs := src.Records(10)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for i := range recs {
		if err := CheckRecord(&recs[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if recs[i].Age != 100*time.Second {
			t.Fatalf("record %d: age %s, want 100s", i, recs[i].Age)
		}
	}
	dst := newCache(t, Config{Now: newClk.Now, DisableStale: true})
	if n := dst.Restore(recs, 5*time.Second); n != 2 {
		t.Fatalf("restored %d, want 2 (short expired: 20s TTL, 105s old)", n)
	}
	m := ask(t, dst, query{name: "www.example.org."})
	if got := ttls(m); len(got) != 1 || got[0] != 195 || m.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("restored answer %v, want 192.0.2.1 with TTL 195", m.Answer)
	}
	if m := ask(t, dst, query{name: "www.example.org.", route: "blue"}); m.Answer[0].(*dns.A).A.String() != "192.0.2.9" {
		t.Fatalf("route blue: %v, want its own answer", m.Answer)
	}
	newClk.Advance(194 * time.Second)
	if got := ttls(ask(t, dst, query{name: "www.example.org."})); got[0] != 1 {
		t.Fatalf("after 194s more: TTL %d, want 1", got[0])
	}
	// The stale window is this cache's: off here, so the entry is gone
	// once its TTL is.
	newClk.Advance(time.Second)
	k := keyOf(t, query{name: "www.example.org."})
	s, h := dst.locate(k)
	if e, _, st := s.get(h, k, newClk.Now()); e != nil {
		t.Fatalf("expired entry still there: state %d", st)
	}
}

// keyOf returns the cache key of q.
func keyOf(t *testing.T, q query) []byte {
	var name [maxWireName]byte
	k, _, ok := appendKey(nil, name[:], q.request(t))
	if !ok {
		t.Fatal("no key")
	}
	return k
}

// TestRecordsECSScope: an entry stored under an ECS scope is restored
// under it, and found by the queries of that subnet.
func TestRecordsECSScope(t *testing.T) {
	clk := newClock()
	src := newCache(t, Config{Now: clk.Now})
	up := upstream{answer: []string{"www.example.org. 300 IN A 198.51.100.1"}}
	next := &fakeNext{t: t, serve: func(m *dns.Msg) (*dns.Msg, error) {
		r, err := up.reply(t, m)
		r.SetEdns0(1232, false)
		r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 16, Address: []byte{203, 0, 113, 0}})
		return r, err
	}}
	if _, err := src.Middleware()(next).ServeDNS(context.Background(), query{name: "www.example.org.", ecs: "203.0.113.0/24"}.request(t)); err != nil {
		t.Fatal(err)
	}
	dst := newCache(t, Config{Now: clk.Now})
	if n := dst.Restore(src.Records(10), 0); n != 1 {
		t.Fatalf("restored %d, want 1", n)
	}
	// Another /24 inside the /16 scope is answered from the entry.
	if m := ask(t, dst, query{name: "www.example.org.", ecs: "203.0.7.0/24"}); m.Answer[0].(*dns.A).A.String() != "198.51.100.1" {
		t.Fatalf("answer %v", m.Answer)
	}
}

// TestRecordsBound: Records gives at most its bound, the most recently
// used first, and a smaller cache that restores them keeps those.
func TestRecordsBound(t *testing.T) {
	clk := newClock()
	src := newCache(t, Config{Now: clk.Now, MaxEntries: 200}) // 16 shards of 12
	// 40 names, so that no shard overflows: a name's shard depends on a
	// per-process hash seed, and 100 names evicted one now and then.
	for i := range 40 {
		name := fmt.Sprintf("n%d.example.org.", i)
		fill(t, src, query{name: name}, upstream{answer: []string{name + " 300 IN A 192.0.2.1"}})
	}
	// n7 becomes the most recently used.
	ask(t, src, query{name: "n7.example.org."})
	recs := src.Records(30)
	if len(recs) != 30 {
		t.Fatalf("%d records, want 30", len(recs))
	}
	found := false
	for _, r := range recs[:len(src.shards)] {
		found = found || string(r.Key[:4]) == "\x02n7\x07"
	}
	if !found {
		t.Fatal("the most recently used entry is not in the first round")
	}
	dst := newCache(t, Config{Now: clk.Now, MaxEntries: 8}) // one shard of 8
	dst.Restore(recs, 0)
	if dst.Len() != 8 {
		t.Fatalf("%d entries, want 8", dst.Len())
	}
	for _, r := range recs[:8] {
		if e, _, _ := dst.shards[0].get(maphash.Bytes(dst.seed, r.Key), r.Key, clk.Now()); e == nil {
			t.Fatalf("%q not kept; the first records should be", r.Key)
		}
	}
	if src.Records(0) != nil || len(src.Records(-1)) != 0 {
		t.Fatal("Records(0) gave entries")
	}
}

// TestRecordsClamped: a cache with a shorter max_ttl clamps what it
// restores, TTLs in the answer included.
func TestRecordsClamped(t *testing.T) {
	clk := newClock()
	src := newCache(t, Config{Now: clk.Now})
	fill(t, src, query{name: "www.example.org."}, upstream{answer: []string{"www.example.org. 3000 IN A 192.0.2.1"}})
	recs := src.Records(1)
	dst := newCache(t, Config{Now: clk.Now, MaxTTL: 60 * time.Second})
	dst.Restore(recs, 0)
	if got := ttls(ask(t, dst, query{name: "www.example.org."})); got[0] != 60 {
		t.Fatalf("TTL %d, want 60", got[0])
	}
	if got := ttls(ask(t, src, query{name: "www.example.org."})); got[0] != 3000 {
		t.Fatalf("source changed: TTL %d, want 3000", got[0])
	}
}

// TestCheckRecord: malformed records are refused.
func TestCheckRecord(t *testing.T) {
	clk := newClock()
	src := newCache(t, Config{Now: clk.Now})
	fill(t, src, query{name: "www.example.org."}, upstream{answer: []string{"www.example.org. 300 IN A 192.0.2.1"}})
	good := src.Records(1)[0]
	tests := []struct {
		name string
		edit func(r *Record)
	}{
		{"upper-case key", func(r *Record) { r.Key[1] = 'W' }},
		{"short key", func(r *Record) { r.Key = r.Key[:5] }},
		{"unknown flag", func(r *Record) { r.Key[len(r.Key)-1] = 0x80 }},
		{"other question", func(r *Record) { r.Key[1] = 'x' }},
		{"short message", func(r *Record) { r.Msg = r.Msg[:20] }},
		{"nonzero ID", func(r *Record) { r.Msg[0] = 1 }},
		{"zero TTL", func(r *Record) { r.TTL = 0 }},
		{"negative age", func(r *Record) { r.Age = -1 }},
		{"unknown verdict", func(r *Record) { r.DNSSEC = 9 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			r.Key, r.Msg = append([]byte(nil), good.Key...), append([]byte(nil), good.Msg...)
			tt.edit(&r)
			if err := CheckRecord(&r); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := CheckRecord(&good); err != nil {
		t.Fatal(err)
	}
	// The answer's owner, a pointer, pointed at its own TTL.
	r := good
	r.Msg = append([]byte(nil), good.Msg...)
	offs, err := ttlOffsets(r.Msg, nil)
	if err != nil || len(offs) == 0 || r.Msg[offs[0]-6]&0xC0 != 0xC0 {
		t.Fatalf("the answer's owner is not a pointer before its TTL at %v (%v)", offs, err)
	}
	r.Msg[offs[0]-6], r.Msg[offs[0]-5] = 0xC0|byte(offs[0]>>8), byte(offs[0])
	if err := CheckRecord(&r); err == nil || !strings.Contains(err.Error(), "rewrites") {
		t.Fatalf("a name read from a TTL: %v", err)
	}
}
