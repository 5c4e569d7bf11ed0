package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestTemplate checks what hits share: records within one age and one
// spelling of the name, nothing across ages, spellings or entries, and
// never the header or the section slices.
func TestTemplate(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now})
	// Three records per section: unpacking leaves spare capacity.
	up := upstream{
		answer: []string{"www.example.org. 300 IN CNAME web.example.org.", "web.example.org. 300 IN A 192.0.2.1", "web.example.org. 300 IN A 192.0.2.2"},
		extra:  []string{"ns1.example.org. 300 IN A 192.0.2.53", "ns2.example.org. 300 IN A 192.0.2.54"},
	}
	next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) { return up.reply(t, q) }}
	h := c.Middleware()(next)
	serve := func(q query) *dns.Msg {
		t.Helper()
		req := q.request(t)
		m, err := h.ServeDNS(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		checkReply(t, 0, req.Msg, m, up)
		return m
	}
	serve(query{id: 1, do: true}) // miss
	a := serve(query{id: 2, do: true})
	b := serve(query{id: 3, do: true, noRD: true})
	if a == b || a.Id == b.Id || a.RecursionDesired == b.RecursionDesired {
		t.Fatalf("hits share their header: %p %p", a, b)
	}
	if a.Answer[0] != b.Answer[0] || a.Extra[0] != b.Extra[0] {
		t.Error("hits at the same age do not share their records")
	}

	// Appending to a hit's sections must not reach another hit.
	rr := func(last byte) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: "x.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: []byte{192, 0, 2, last}}
	}
	grow := func(m *dns.Msg, last byte) {
		m.Question = append(m.Question, dns.Question{Name: "x.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
		m.Answer = append(m.Answer, rr(last))
		m.Ns = append(m.Ns, rr(last))
		m.Extra = append(m.Extra, rr(last))
	}
	grow(a, 7)
	d := serve(query{id: 4, do: true})
	if len(d.Question) != 1 || len(d.Answer) != 3 || len(d.Ns) != 0 || len(d.Extra) != 3 {
		t.Fatalf("an append to one hit shows in the next:\n%v", d)
	}
	grow(d, 8)
	for _, sec := range [][]dns.RR{a.Answer, a.Ns, a.Extra} {
		if got := sec[len(sec)-1].(*dns.A).A[3]; got != 7 {
			t.Fatalf("an append to one hit overwrote what another appended: %v", sec)
		}
	}

	// Another spelling gets its own answer, spelled as asked, and leaves
	// the template to the first spelling.
	upper := serve(query{id: 5, do: true, name: "WWW.Example.ORG."})
	if upper.Answer[0] == a.Answer[0] || upper.Answer[0].Header().Name != "WWW.Example.ORG." {
		t.Errorf("other spelling: %v", upper.Answer[0])
	}
	if d := serve(query{id: 6, do: true}); d.Answer[0] != b.Answer[0] {
		t.Error("the template did not survive a query with another spelling")
	}

	// A second later the template is rebuilt with lower TTLs.
	clk.Advance(time.Second)
	later := serve(query{id: 7, do: true})
	if later.Answer[0] == a.Answer[0] || later.Answer[0].Header().Ttl != 299 || a.Answer[0].Header().Ttl != 300 {
		t.Errorf("after a second: TTL %d (earlier hit %d), shared %v; want 299 (300), not shared",
			later.Answer[0].Header().Ttl, a.Answer[0].Header().Ttl, later.Answer[0] == a.Answer[0])
	}
	if n := next.calls.Load(); n != 1 {
		t.Errorf("next called %d times, want once", n)
	}
}

// TestTemplateStale checks that stale answers share one template whatever
// their age, with StaleTTL and EDE 3, apart from the fresh ones.
func TestTemplateStale(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now, StaleTTL: 7 * time.Second})
	next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) { return answerAny(q) }}
	h := c.Middleware()(next)
	req := query{do: true}.request(t)
	if _, err := h.ServeDNS(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	fresh, err := h.ServeDNS(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var nameBuf [maxWireName]byte
	var keyBuf [keyStack]byte
	key, qname, _ := appendKey(keyBuf[:0], nameBuf[:], req)
	s, kh := c.locate(key)
	var stale []*dns.Msg
	for _, age := range []uint32{300, 301, 5000} {
		e, _, _ := s.get(kh, key, clk.Now())
		m, _ := c.answer(s, e, age, qname, req.Msg, true)
		if m == nil || m.Answer[0].Header().Ttl != 7 || len(ede(m)) != 1 || ede(m)[0] != dns.ExtendedErrorCodeStaleAnswer {
			t.Fatalf("stale answer at age %d: %v", age, m)
		}
		stale = append(stale, m)
	}
	if stale[0].Answer[0] != stale[2].Answer[0] || stale[0].Answer[0] == fresh.Answer[0] {
		t.Error("stale answers do not share one template apart from the fresh one")
	}
	if len(ede(fresh)) != 0 || fresh.Answer[0].Header().Ttl != 300 {
		t.Errorf("fresh answer changed by stale ones: %v", fresh)
	}
}

// TestTemplateBytes checks that a template counts against the byte bound
// once, and stops counting when its entry goes.
func TestTemplateBytes(t *testing.T) {
	t.Parallel()
	c := newCache(t, Config{MaxEntries: 8}) // one shard
	clk := newClock()
	c.now = clk.Now
	h := c.Middleware()(&fakeNext{t: t, serve: answerAny})
	s := &c.shards[0]
	if _, err := serveName(t, h, "a.example.org.", 1); err != nil {
		t.Fatal(err)
	}
	entryOnly := s.bytes.Load()
	e := s.lru.next
	for i := range 3 { // hits at two ages
		if i == 2 {
			clk.Advance(time.Second)
		}
		if _, err := serveName(t, h, "a.example.org.", 2); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.bytes.Load(), entryOnly+templateSize(e.msg()); got != want {
		t.Errorf("bytes with a template = %d, want %d", got, want)
	}
	s.remove(e)
	if got := s.bytes.Load(); got != 0 {
		t.Errorf("bytes after removal = %d, want 0", got)
	}
}

// TestTemplateConcurrent serves one entry to many queries at once while
// its age changes; run with -race it shows that hits only read what they
// share.
func TestTemplateConcurrent(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c := newCache(t, Config{Now: clk.Now})
	h := c.Middleware()(&fakeNext{t: t, serve: answerAny})
	if _, err := serveName(t, h, "www.example.org.", 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i%20 == 0 {
					clk.Advance(time.Second)
				}
				id := uint16(g<<8 | i)
				name := "www.example.org."
				if i%7 == 0 {
					name = "WWW.example.org."
				}
				m, err := serveName(t, h, name, id)
				if err != nil {
					t.Error(err)
					return
				}
				if m.Id != id || m.Question[0].Name != name || m.Answer[0].Header().Name != name {
					t.Errorf("query %d for %s: got\n%v", id, name, m)
					return
				}
				if ttl := m.Answer[0].Header().Ttl; ttl > 300 || ttl < 290 {
					t.Errorf("query %d: TTL %d", id, ttl)
				}
			}
		})
	}
	wg.Wait()
}
