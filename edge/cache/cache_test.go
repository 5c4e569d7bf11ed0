package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

type step struct {
	advance time.Duration
	q       query
	hit     bool
	ttls    []uint32 // TTLs of the reply's records, OPT excluded; nil: unchecked
}

const aWWW = "www.example.org. 300 IN A 192.0.2.1"

var errUpDown = errors.New("all paths failed")

// errAllFailed is an error like the forward stage's when every upstream
// path failed.
var errAllFailed = fmt.Errorf("forward to group default: %w: timeout", pipeline.ErrUpstreamFailed)

// soa returns the example.org. SOA with the given TTL and MINIMUM.
func soa(ttl, minimum string) string {
	return "example.org. " + ttl + " IN SOA ns.example.org. host.example.org. 1 7200 3600 1209600 " + minimum
}

func TestServe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		up    upstream
		steps []step
	}{
		{"positive answer counts down and expires", Config{}, upstream{answer: []string{aWWW}}, []step{
			{q: query{id: 1}},
			{advance: 10 * time.Second, q: query{id: 2}, hit: true, ttls: []uint32{290}},
			{advance: 289 * time.Second, q: query{id: 3}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{id: 4}},
			{q: query{id: 5}, hit: true, ttls: []uint32{300}},
		}},
		{"DO and CD make separate entries", Config{}, upstream{answer: []string{aWWW}}, []step{
			{q: query{}},
			{q: query{do: true}},
			{q: query{cd: true}},
			{q: query{do: true, cd: true}},
			{q: query{}, hit: true},
			{q: query{do: true}, hit: true},
			{q: query{cd: true}, hit: true},
			{q: query{do: true, cd: true}, hit: true},
		}},
		{"names are case-insensitive", Config{}, upstream{answer: []string{aWWW}}, []step{
			{q: query{name: "www.example.org."}},
			{q: query{name: "WwW.ExAmple.ORG."}, hit: true, ttls: []uint32{300}},
			{q: query{name: "WWW.EXAMPLE.ORG."}, hit: true},
		}},
		{"type, class and route make separate entries", Config{}, upstream{answer: []string{aWWW}}, []step{
			{q: query{}},
			{q: query{qtype: dns.TypeAAAA}},
			{q: query{qclass: dns.ClassCHAOS}},
			{q: query{route: "gray"}},
			{q: query{route: "gray"}, hit: true},
			{q: query{}, hit: true},
		}},
		{"RD and ID follow each query", Config{}, upstream{answer: []string{aWWW}}, []step{
			{q: query{id: 100}},
			{q: query{id: 200, noRD: true}, hit: true},
			{q: query{id: 300}, hit: true},
		}},
		{"NXDOMAIN kept for SOA MINIMUM", Config{}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("3600", "60")}}, []step{
			{q: query{}},
			{advance: 59 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"NXDOMAIN kept for SOA TTL", Config{}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("30", "300")}}, []step{
			{q: query{}, ttls: []uint32{30}},
			{advance: 29 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"NXDOMAIN capped by NegativeTTL", Config{NegativeTTL: 10 * time.Second}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("3600", "3600")}}, []step{
			{q: query{}},
			{advance: 9 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"NXDOMAIN raised by MinTTL", Config{MinTTL: 2 * time.Minute}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("3600", "60")}}, []step{
			{q: query{}},
			{advance: 119 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"NegativeTTL wins over MinTTL", Config{MinTTL: time.Hour, NegativeTTL: time.Minute}, upstream{rcode: dns.RcodeNameError, ns: []string{soa("3600", "3600")}}, []step{
			{q: query{}},
			{q: query{}, hit: true, ttls: []uint32{60}},
		}},
		{"NXDOMAIN after CNAME kept for the lower TTL", Config{}, upstream{rcode: dns.RcodeNameError,
			answer: []string{"www.example.org. 20 IN CNAME gone.example.org."}, ns: []string{soa("3600", "60")}}, []step{
			{q: query{}},
			{advance: 10 * time.Second, q: query{}, hit: true, ttls: []uint32{10, 10}},
			{advance: 10 * time.Second, q: query{}},
		}},
		{"NODATA kept for SOA MINIMUM", Config{}, upstream{ns: []string{soa("300", "120")}}, []step{
			{q: query{}},
			{advance: 100 * time.Second, q: query{}, hit: true, ttls: []uint32{20}},
			{advance: 20 * time.Second, q: query{}},
		}},
		{"NXDOMAIN without SOA not cached", Config{}, upstream{rcode: dns.RcodeNameError}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"referral without SOA not cached", Config{}, upstream{ns: []string{"example.org. 300 IN NS ns.example.org."}}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"truncated not cached", Config{}, upstream{answer: []string{aWWW}, tc: true}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"errors not cached", Config{}, upstream{err: errUpDown}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"upstream failures kept for ServfailTTL", Config{ServfailTTL: 5 * time.Second}, upstream{err: errAllFailed}, []step{
			{q: query{}},
			{advance: 4 * time.Second, q: query{}, hit: true},
			{advance: time.Second, q: query{}},
		}},
		{"other errors not cached with ServfailTTL", Config{ServfailTTL: 5 * time.Second}, upstream{err: errUpDown}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"SERVFAIL not cached by default", Config{}, upstream{rcode: dns.RcodeServerFailure}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"SERVFAIL kept for ServfailTTL", Config{ServfailTTL: 30 * time.Second}, upstream{rcode: dns.RcodeServerFailure}, []step{
			{q: query{}},
			{advance: 29 * time.Second, q: query{}, hit: true},
			{advance: time.Second, q: query{}},
		}},
		{"REFUSED not cached", Config{}, upstream{rcode: dns.RcodeRefused}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"TTL 0 not cached despite MinTTL", Config{MinTTL: time.Minute}, upstream{answer: []string{"www.example.org. 0 IN A 192.0.2.1"}}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"TTL with the top bit set reads as 0", Config{}, upstream{answer: []string{"www.example.org. 2147483648 IN A 192.0.2.1"}}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"reply to another question not cached", Config{}, upstream{answer: []string{aWWW},
			question: &dns.Question{Name: "other.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}, []step{
			{q: query{}}, {q: query{}},
		}},
		{"MaxTTL clamps", Config{MaxTTL: time.Minute}, upstream{answer: []string{"www.example.org. 86400 IN A 192.0.2.1"}}, []step{
			{q: query{}},
			{q: query{}, hit: true, ttls: []uint32{60}},
			{advance: 59 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"MinTTL raises", Config{MinTTL: time.Minute}, upstream{answer: []string{"www.example.org. 5 IN A 192.0.2.1"}}, []step{
			{q: query{}},
			{advance: 10 * time.Second, q: query{}, hit: true, ttls: []uint32{50}},
			{advance: 49 * time.Second, q: query{}, hit: true, ttls: []uint32{1}},
			{advance: time.Second, q: query{}},
		}},
		{"lowest TTL of answer and authority wins, additional counts down to 0", Config{}, upstream{
			answer: []string{"www.example.org. 3600 IN CNAME web.example.org.", "web.example.org. 100 IN A 192.0.2.1"},
			ns:     []string{"example.org. 50 IN NS ns.example.org."},
			extra:  []string{"ns.example.org. 20 IN A 192.0.2.53"},
		}, []step{
			{q: query{do: true}},
			{q: query{do: true}, hit: true, ttls: []uint32{50, 50, 50, 20}},
			{advance: 30 * time.Second, q: query{do: true}, hit: true, ttls: []uint32{20, 20, 20, 0}},
			{advance: 20 * time.Second, q: query{do: true}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			tt.cfg.Now = clk.Now
			c := newCache(t, tt.cfg)
			next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) { return tt.up.reply(t, q) }}
			h := c.Middleware()(next)
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				req := st.q.request(t)
				before := next.calls.Load()
				m, err := h.ServeDNS(context.Background(), req)
				if hit := next.calls.Load() == before; hit != st.hit {
					t.Fatalf("step %d: hit = %v, want %v", i, hit, st.hit)
				}
				if tt.up.err != nil {
					if !errors.Is(err, tt.up.err) || m != nil {
						t.Fatalf("step %d: got %v, %v; want error %v", i, m, err, tt.up.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				checkReply(t, i, req.Msg, m, tt.up)
				if got := ttls(m); st.ttls != nil && !slices.Equal(got, st.ttls) {
					t.Errorf("step %d: TTLs %v, want %v", i, got, st.ttls)
				}
			}
		})
	}
}

// checkReply checks that m answers q with the records of up.
func checkReply(t *testing.T, step int, q, m *dns.Msg, up upstream) {
	t.Helper()
	want, _ := up.reply(t, q)
	switch {
	case m.Id != q.Id:
		t.Errorf("step %d: id %d, want %d", step, m.Id, q.Id)
	case m.RecursionDesired != q.RecursionDesired:
		t.Errorf("step %d: RD %v, want %v", step, m.RecursionDesired, q.RecursionDesired)
	case m.Rcode != up.rcode:
		t.Errorf("step %d: rcode %d, want %d", step, m.Rcode, up.rcode)
	case up.question == nil && (len(m.Question) != 1 || m.Question[0] != q.Question[0]):
		t.Errorf("step %d: question %v, want %v", step, m.Question, q.Question)
	case !sameRecords(m.Answer, want.Answer) || !sameRecords(m.Ns, want.Ns) || !sameRecords(m.Extra, want.Extra):
		t.Errorf("step %d: reply\n%v\nwant\n%v", step, m, want)
	}
}

func TestBypass(t *testing.T) {
	t.Parallel()
	multi := query{}.request(t)
	multi.Msg.Question = append(multi.Msg.Question, dns.Question{Name: "b.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	notify := query{}.request(t)
	notify.Msg.Opcode = dns.OpcodeNotify
	notFQDN := query{}.request(t)
	notFQDN.Msg.Question[0].Name = "www.example.org"
	tests := []struct {
		name string
		req  func() *dns.Msg
	}{
		{"two questions", func() *dns.Msg { return multi.Msg }},
		{"NOTIFY", func() *dns.Msg { return notify.Msg }},
		{"AXFR", func() *dns.Msg { return query{qtype: dns.TypeAXFR}.request(t).Msg }},
		{"name not fully qualified", func() *dns.Msg { return notFQDN.Msg }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
				return upstream{answer: []string{aWWW}}.reply(t, q)
			}}
			h := c.Middleware()(next)
			for range 2 {
				req := query{}.request(t)
				req.Msg = tt.req()
				if _, err := h.ServeDNS(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			if n := next.calls.Load(); n != 2 || c.Len() != 0 {
				t.Fatalf("next called %d times, %d entries; want 2 calls, no entry", n, c.Len())
			}
		})
	}
}

// TestReplyUntouched checks that a miss returns next's reply itself, ID
// included, and that later hits do not share memory with it.
func TestReplyUntouched(t *testing.T) {
	t.Parallel()
	c := newCache(t, Config{})
	var orig *dns.Msg
	next := &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		orig, _ = upstream{answer: []string{aWWW}}.reply(t, q)
		return orig, nil
	}}
	h := c.Middleware()(next)
	m, err := h.ServeDNS(context.Background(), query{id: 7}.request(t))
	if err != nil || m != orig || m.Id != 7 {
		t.Fatalf("miss returned %p (id %d), %v; want next's reply %p", m, m.Id, err, orig)
	}
	orig.Answer[0].(*dns.A).A[3] = 99
	hit, err := h.ServeDNS(context.Background(), query{id: 8}.request(t))
	if err != nil || hit.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("hit = %v, %v; want the answer as first returned", hit, err)
	}

	// Hits are unpacked from a reused buffer: a later hit on another entry
	// must not show through an earlier answer.
	next.serve = answerAny
	if _, err := serveName(t, h, "other.example.org.", 9); err != nil {
		t.Fatal(err)
	}
	other, err := serveName(t, h, "other.example.org.", 10)
	if err != nil || next.calls.Load() != 2 {
		t.Fatalf("other: %v, %v after %d calls", other, err, next.calls.Load())
	}
	other.Answer[0].(*dns.A).A[3] = 42
	if again, _ := serveName(t, h, "www.example.org.", 11); again.Answer[0].(*dns.A).A.String() != "192.0.2.1" ||
		hit.Answer[0].(*dns.A).A.String() != "192.0.2.1" || hit.Question[0].Name != "www.example.org." {
		t.Fatalf("answers share memory: first hit %v, later hit %v", hit, again)
	}
}
