package cache

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeNext is the handler behind the cache. An unset serve fails the test
// when called.
type fakeNext struct {
	t     testing.TB
	serve func(q *dns.Msg) (*dns.Msg, error)
	calls atomic.Int64
}

func (f *fakeNext) ServeDNS(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	f.calls.Add(1)
	if f.serve == nil {
		f.t.Error("next called but serve is not set")
		return nil, errors.New("serve not set")
	}
	return f.serve(req.Msg)
}

// upstream describes the reply of the next handler, records as zone text.
type upstream struct {
	rcode             int
	answer, ns, extra []string
	tc                bool
	err               error
	// question, when set, replaces the question of the reply.
	question *dns.Question
}

func (u upstream) reply(t testing.TB, q *dns.Msg) (*dns.Msg, error) {
	if u.err != nil {
		return nil, u.err
	}
	m := new(dns.Msg)
	m.SetRcode(q, u.rcode)
	m.RecursionAvailable = true
	m.Truncated = u.tc
	m.Answer = rrs(t, u.answer)
	m.Ns = rrs(t, u.ns)
	m.Extra = rrs(t, u.extra)
	if u.question != nil {
		m.Question = []dns.Question{*u.question}
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(1232, opt.Do())
	}
	return m, nil
}

func rrs(t testing.TB, zone []string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, s := range zone {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("parse %q: %v", s, err)
		}
		out = append(out, rr)
	}
	return out
}

// query describes a query; the zero value asks www.example.org. IN A with
// RD set.
type query struct {
	name   string
	qtype  uint16
	qclass uint16
	do, cd bool
	noRD   bool
	id     uint16
	route  string
	ecs    string
}

func (q query) request(t testing.TB) *pipeline.Request {
	m := new(dns.Msg)
	name, qtype := q.name, q.qtype
	if name == "" {
		name = "www.example.org."
	}
	if qtype == 0 {
		qtype = dns.TypeA
	}
	m.SetQuestion(name, qtype)
	if q.qclass != 0 {
		m.Question[0].Qclass = q.qclass
	}
	m.Id = q.id
	m.RecursionDesired = !q.noRD
	m.CheckingDisabled = q.cd
	if q.do {
		m.SetEdns0(1232, true)
	}
	req := &pipeline.Request{Msg: m, Route: q.route, Listener: pipeline.KindUDP}
	if q.ecs != "" {
		req.ECS = netip.MustParsePrefix(q.ecs)
	}
	return req
}

// ttls lists the TTLs of every record of m but OPT, in section order.
func ttls(m *dns.Msg) []uint32 {
	var out []uint32
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.Header().Ttl)
			}
		}
	}
	return out
}

// sameRecords reports whether a and b hold the same records, TTLs and name
// case aside.
func sameRecords(a, b []dns.RR) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := dns.Copy(a[i]), dns.Copy(b[i])
		x.Header().Ttl, y.Header().Ttl = 0, 0
		if !strings.EqualFold(x.String(), y.String()) {
			return false
		}
	}
	return true
}

func newCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
