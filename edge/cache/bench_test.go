package cache

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// benchReply is a typical small answer: a CNAME and an A record, with EDNS.
func benchReply(q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	name := q.Question[0].Name
	m.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 3600}, Target: "web.example.org."},
		&dns.A{Hdr: dns.RR_Header{Name: "web.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 1}},
	}
	m.SetEdns0(1232, false)
	return m, nil
}

// packWalked packs m with its names compressed and walks it for its TTL
// fields, as the cache stores an answer.
func packWalked(b testing.TB, m *dns.Msg) ([]byte, []uint16) {
	b.Helper()
	m.Compress = true
	msg, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	offs, err := ttlOffsets(msg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return msg, offs
}

func benchRequest(name string, id uint16) *pipeline.Request {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = id
	m.SetEdns0(1232, false)
	return &pipeline.Request{Msg: m, Listener: pipeline.KindUDP}
}

// BenchmarkCacheHit measures a hit through the middleware, from the query
// to the unpacked answer.
func BenchmarkCacheHit(b *testing.B) {
	c := newCache(b, Config{})
	next := &fakeNext{t: b, serve: benchReply}
	h := c.Middleware()(next)
	req := benchRequest("www.example.org.", 1)
	ctx := context.Background()
	if _, err := h.ServeDNS(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ServeDNS(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		b.Fatalf("next called %d times, want once", n)
	}
}

// BenchmarkCacheHitParallel spreads hits over 1024 names on all cores.
func BenchmarkCacheHitParallel(b *testing.B) {
	c := newCache(b, Config{})
	h := c.Middleware()(&fakeNext{t: b, serve: benchReply})
	const names = 1024
	reqs := make([]*pipeline.Request, names)
	ctx := context.Background()
	for i := range reqs {
		reqs[i] = benchRequest(fmt.Sprintf("host%d.example.org.", i), uint16(i))
		if _, err := h.ServeDNS(ctx, reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(7919)
		for pb.Next() {
			i++
			if _, err := h.ServeDNS(ctx, reqs[i%names]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCacheMiss measures a miss that stores the answer: key, pack,
// walk, insert (evicting once the cache is full).
func BenchmarkCacheMiss(b *testing.B) {
	c := newCache(b, Config{MaxEntries: 1024})
	reply, _ := benchReply(benchRequest("www.example.org.", 0).Msg)
	h := c.Middleware()(&fakeNext{t: b, serve: func(q *dns.Msg) (*dns.Msg, error) { return reply, nil }})
	reqs := make([]*pipeline.Request, 4096)
	for i := range reqs {
		reqs[i] = benchRequest("www.example.org.", 0)
		reqs[i].Route = fmt.Sprint(i) // same question, distinct keys
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := h.ServeDNS(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAppendAnswer measures the wire part of a hit alone: copy and
// patch, no unpacking. It is what a hit costs a caller that can use bytes.
func BenchmarkAppendAnswer(b *testing.B) {
	m, _ := benchReply(benchRequest("www.example.org.", 0).Msg)
	msg, offs := packWalked(b, m)
	e := newEntry(nil, msg, offs, time.Unix(0, 0), 300, 0)
	qname := msg[headerLen : headerLen+len("www.example.org.")+1]
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendAnswer(buf[:0], 10, 1234, true, qname)
	}
}
