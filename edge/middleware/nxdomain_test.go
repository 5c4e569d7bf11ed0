package middleware

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/miekg/dns"
)

// nxSOA is the SOA of the denials in these tests: TTL 300, MINIMUM 60.
const nxSOA = "internal. 300 IN SOA ns.internal. hostmaster.internal. 1 7200 3600 1209600 60"

// nxClock is a fake clock, safe for concurrent use.
type nxClock struct{ ns atomic.Int64 }

func newNXClock() *nxClock {
	c := &nxClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *nxClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *nxClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// nxUpstream is the handler behind the cache: query answers client
// queries, probe the internal suffix probes. A call to an unset field fails
// the test.
type nxUpstream struct {
	t       *testing.T
	query   func(req *pipeline.Request) (*dns.Msg, error)
	probe   func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error)
	queries atomic.Int64
	probes  atomic.Int64
}

var errUnexpected = errors.New("unexpected call")

func (u *nxUpstream) ServeDNS(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
	if req.Listener == pipeline.KindInternal {
		u.probes.Add(1)
		if u.probe == nil {
			u.t.Errorf("unexpected probe %s", req.Msg.Question[0].String())
			return nil, errUnexpected
		}
		return u.probe(ctx, req)
	}
	u.queries.Add(1)
	if u.query == nil {
		u.t.Errorf("unexpected query %s", req.Msg.Question[0].String())
		return nil, errUnexpected
	}
	return u.query(req)
}

// zone parses records written as zone text.
func zone(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("parse %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

// answer returns a handler answering rcode with the records given as zone
// text in the answer and authority sections.
func answer(t testing.TB, rcode int, ans []string, ns ...string) func(*pipeline.Request) (*dns.Msg, error) {
	a, n := zone(t, ans...), zone(t, ns...)
	return func(req *pipeline.Request) (*dns.Msg, error) {
		m := new(dns.Msg).SetRcode(req.Msg, rcode)
		for _, rr := range a {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
		for _, rr := range n {
			m.Ns = append(m.Ns, dns.Copy(rr))
		}
		return m, nil
	}
}

// suffixExists answers a probe: the suffix exists.
func suffixExists(_ context.Context, req *pipeline.Request) (*dns.Msg, error) {
	soa, err := dns.NewRR(nxSOA)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg).SetReply(req.Msg)
	m.Answer = []dns.RR{soa}
	return m, nil
}

func nxQuery(name string, qtype uint16, route string) *pipeline.Request {
	q := new(dns.Msg).SetQuestion(name, qtype)
	q.SetEdns0(4096, false)
	return &pipeline.Request{Msg: q, Listener: pipeline.KindUDP, Route: route}
}

func newNX(t *testing.T, cfg NXDomainConfig, clock *nxClock, up *nxUpstream) (*NXDomain, pipeline.Handler) {
	t.Helper()
	n, err := NewNXDomain(cfg, clock.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, n.Middleware()(up)
}

// waitProbes waits, bounded, until no probe is in flight.
func waitProbes(t *testing.T, n *NXDomain) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n.mu.Lock()
		running := false
		for _, st := range n.states {
			running = running || st.running
		}
		n.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("suffix probe still running after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// remembered lists the names n keeps for route, sorted.
func remembered(n *NXDomain, route string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.items {
		if k.route == route {
			out = append(out, k.name)
		}
	}
	slices.Sort(out)
	return out
}

// serve asks h and reports whether the answer came from up.
func serve(t *testing.T, h pipeline.Handler, up *nxUpstream, req *pipeline.Request) (*dns.Msg, bool) {
	t.Helper()
	before := up.queries.Load()
	m, err := h.ServeDNS(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Msg.Question[0].String(), err)
	}
	return m, up.queries.Load() != before
}

// checkDenial checks a local answer to req: NXDOMAIN, RA, not AA, the
// question as asked, and the SOA with TTL wantTTL (none when negative).
func checkDenial(t *testing.T, req *pipeline.Request, m *dns.Msg, wantTTL int) {
	t.Helper()
	if m.Rcode != dns.RcodeNameError || !m.Response || !m.RecursionAvailable || m.Authoritative || m.Id != req.Msg.Id {
		t.Fatalf("local answer header wrong: %s", m.MsgHdr.String())
	}
	if len(m.Question) != 1 || m.Question[0] != req.Msg.Question[0] {
		t.Fatalf("question %v, want %v", m.Question, req.Msg.Question)
	}
	if len(m.Answer) != 0 || len(m.Extra) != 0 {
		t.Fatalf("answer/additional not empty: %v", m)
	}
	if wantTTL < 0 {
		if len(m.Ns) != 0 {
			t.Fatalf("authority %v, want none", m.Ns)
		}
		return
	}
	if len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA || m.Ns[0].Header().Ttl != uint32(wantTTL) {
		t.Fatalf("authority %v, want the SOA with TTL %d", m.Ns, wantTTL)
	}
}

func TestNXDomainPassThrough(t *testing.T) {
	twoQuestions := nxQuery("a.internal.", dns.TypeA, "")
	twoQuestions.Msg.Question = append(twoQuestions.Msg.Question, dns.Question{Name: "b.internal.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	notify := nxQuery("a.internal.", dns.TypeSOA, "")
	notify.Msg.Opcode = dns.OpcodeNotify
	chaos := nxQuery("a.internal.", dns.TypeTXT, "")
	chaos.Msg.Question[0].Qclass = dns.ClassCHAOS
	tests := []struct {
		name string
		req  *pipeline.Request
	}{
		{"unrelated name", nxQuery("www.example.org.", dns.TypeA, "")},
		{"suffix in the middle", nxQuery("internal.example.", dns.TypeA, "")},
		{"suffix not at a label boundary", nxQuery("xinternal.", dns.TypeA, "")},
		{"escaped dot", nxQuery(`a\.internal.`, dns.TypeA, "")},
		{"parent of a suffix", nxQuery("example.", dns.TypeA, "")},
		{"two questions", twoQuestions},
		{"opcode NOTIFY", notify},
		{"class CH", chaos},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA)}
			n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal", "corp.example."}}, newNXClock(), up)
			for range 2 {
				if _, fromUp := serve(t, h, up, tt.req); !fromUp {
					t.Fatal("answered locally")
				}
			}
			if got := remembered(n, ""); len(got) != 0 || n.probes.Load() != 0 {
				t.Fatalf("remembered %v, %d probes; want nothing", got, n.probes.Load())
			}
		})
	}
}

func TestNXDomainRemembersName(t *testing.T) {
	clock := newNXClock()
	up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA), probe: suffixExists}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, clock, up)
	steps := []struct {
		name     string
		advance  time.Duration
		qname    string
		qtype    uint16
		wantUp   bool
		wantTTL  int // of the SOA served locally
		wantHits uint64
	}{
		{"first query goes upstream", 0, "bad.internal.", dns.TypeA, true, 0, 0},
		{"another type answered locally", 0, "bad.internal.", dns.TypeAAAA, false, 30, 1},
		{"any case, TTL lowered", 10 * time.Second, "BAD.Internal.", dns.TypeMX, false, 20, 2},
		{"last second", 19 * time.Second, "bad.internal.", dns.TypeTXT, false, 1, 3},
		{"expired: upstream again", time.Second, "bad.internal.", dns.TypeA, true, 0, 3},
		{"remembered again", 0, "bad.internal.", dns.TypeHTTPS, false, 30, 4},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.advance(st.advance)
			req := nxQuery(st.qname, st.qtype, "")
			m, fromUp := serve(t, h, up, req)
			if fromUp != st.wantUp {
				t.Fatalf("from upstream = %v, want %v", fromUp, st.wantUp)
			}
			if !fromUp {
				checkDenial(t, req, m, st.wantTTL)
			}
			if src := req.Outcome.Source; fromUp == (src == pipeline.SourceSynthesized) {
				t.Errorf("Outcome.Source = %v with an answer from upstream %v", src, fromUp)
			}
			if got := n.hits.Load(); got != st.wantHits {
				t.Fatalf("hits = %d, want %d", got, st.wantHits)
			}
		})
	}
}

func TestNXDomainDeniesBelow(t *testing.T) {
	// RFC 8020: a remembered x.internal. denies every name below it.
	up := &nxUpstream{t: t, probe: suffixExists, query: func(req *pipeline.Request) (*dns.Msg, error) {
		if underSuffix(req.Question().Name, "x.internal.") {
			return answer(t, dns.RcodeNameError, nil, nxSOA)(req)
		}
		return answer(t, dns.RcodeSuccess, nil, nxSOA)(req)
	}}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
	if _, fromUp := serve(t, h, up, nxQuery("x.internal.", dns.TypeA, "")); !fromUp {
		t.Fatal("first query answered locally")
	}
	tests := []struct {
		qname  string
		wantUp bool
	}{
		{"a.b.x.internal.", false},
		{"B.X.Internal.", false},
		{"x.internal.", false},
		{"y.internal.", true},
		{"ax.internal.", true},
		{"internal.", true},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			req := nxQuery(tt.qname, dns.TypeAAAA, "")
			m, fromUp := serve(t, h, up, req)
			if fromUp != tt.wantUp {
				t.Fatalf("from upstream = %v, want %v", fromUp, tt.wantUp)
			}
			if !fromUp {
				checkDenial(t, req, m, 30)
			}
		})
	}
	if got := remembered(n, ""); !slices.Equal(got, []string{"x.internal."}) {
		t.Fatalf("remembered %v, want only x.internal.", got)
	}
}

func TestNXDomainSuffixProbe(t *testing.T) {
	const rootSOA = ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 2025010100 1800 900 604800 86400"
	tests := []struct {
		name        string
		suffixNX    bool
		wantQueries int64 // of 1 + 1000 distinct names
	}{
		// After one denial below internal. and one probe, every other
		// name is denied locally.
		{"suffix does not exist", true, 1},
		// Every distinct name is asked once; the probe once per TTL.
		{"suffix exists", false, 1001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newNXClock()
			up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA)}
			up.probe = func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				q := req.Msg
				if q.Question[0] != (dns.Question{Name: "internal.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}) ||
					!q.RecursionDesired || q.IsEdns0() == nil || req.Route != "r1" {
					t.Errorf("probe %v route %q: want internal. SOA, RD, EDNS, route r1", q, req.Route)
				}
				if d, ok := ctx.Deadline(); !ok || time.Until(d) > nxProbeTimeout {
					t.Errorf("probe deadline %v, want one within %s", d, nxProbeTimeout)
				}
				if tt.suffixNX {
					return answer(t, dns.RcodeNameError, nil, rootSOA)(req)
				}
				return suffixExists(ctx, req)
			}
			n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, clock, up)
			serve(t, h, up, nxQuery("r0.internal.", dns.TypeA, "r1"))
			waitProbes(t, n)
			for i := range 1000 {
				serve(t, h, up, nxQuery(fmt.Sprintf("r%d-%x.internal.", i, i*7919), dns.TypeA, "r1"))
			}
			waitProbes(t, n)
			if got := up.queries.Load(); got != tt.wantQueries {
				t.Fatalf("%d queries upstream, want %d", got, tt.wantQueries)
			}
			if got := up.probes.Load(); got != 1 {
				t.Fatalf("%d probes, want 1", got)
			}
			// Once the TTL has passed, the next denial probes again.
			clock.advance(31 * time.Second)
			serve(t, h, up, nxQuery("late.internal.", dns.TypeA, "r1"))
			waitProbes(t, n)
			if got := up.probes.Load(); got != 2 {
				t.Fatalf("%d probes after the TTL, want 2", got)
			}
		})
	}
}

func TestNXDomainProbeLifetime(t *testing.T) {
	started := make(chan context.Context, 1)
	up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA)}
	up.probe = func(ctx context.Context, _ *pipeline.Request) (*dns.Msg, error) {
		started <- ctx
		<-ctx.Done()
		return nil, ctx.Err()
	}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := h.ServeDNS(ctx, nxQuery("a.internal.", dns.TypeA, "")); err != nil {
		t.Fatal(err)
	}
	cancel()
	var pctx context.Context
	select {
	case pctx = <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe started")
	}
	if pctx.Err() != nil {
		t.Fatal("the probe was cancelled with the client's query")
	}
	n.Close() // cancels the probe and waits for it
	if !errors.Is(pctx.Err(), context.Canceled) {
		t.Fatalf("probe context after Close: %v", pctx.Err())
	}
	serve(t, h, up, nxQuery("b.internal.", dns.TypeA, ""))
	if got := up.probes.Load(); got != 1 {
		t.Fatalf("%d probes, want none after Close", got-1)
	}
}

func TestNXDomainTTL(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration // configured
		soa  string        // in the denial; "" for none
		want time.Duration // how long the name is kept
	}{
		{"configured TTL below the SOA's", 0, nxSOA, 30 * time.Second},
		{"SOA TTL caps", time.Minute, "internal. 10 IN SOA ns.internal. h.internal. 1 7200 3600 1209600 600", 10 * time.Second},
		{"SOA MINIMUM caps", time.Minute, "internal. 300 IN SOA ns.internal. h.internal. 1 7200 3600 1209600 5", 5 * time.Second},
		{"no SOA: configured TTL", 20 * time.Second, "", 20 * time.Second},
		{"SOA negative TTL zero: not kept", 0, "internal. 0 IN SOA ns.internal. h.internal. 1 7200 3600 1209600 60", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ns []string
			if tt.soa != "" {
				ns = append(ns, tt.soa)
			}
			clock := newNXClock()
			up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, ns...), probe: suffixExists}
			_, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}, TTL: tt.ttl}, clock, up)
			serve(t, h, up, nxQuery("gone.internal.", dns.TypeA, ""))
			if tt.want > 0 {
				clock.advance(tt.want - time.Second)
				req := nxQuery("gone.internal.", dns.TypeAAAA, "")
				m, fromUp := serve(t, h, up, req)
				if fromUp {
					t.Fatalf("forgotten before %s", tt.want)
				}
				wantTTL := 1
				if tt.soa == "" {
					wantTTL = -1
				}
				checkDenial(t, req, m, wantTTL)
				clock.advance(time.Second)
			}
			if _, fromUp := serve(t, h, up, nxQuery("gone.internal.", dns.TypeA, "")); !fromUp {
				t.Fatalf("still remembered after %s", tt.want)
			}
		})
	}
}

func TestNXDomainCNAMEChain(t *testing.T) {
	tests := []struct {
		name   string
		answer []string
		want   []string // remembered
	}{
		{"target under the suffix", []string{
			"mid.internal. 60 IN CNAME gone.internal.", // out of order on purpose
			"alias.internal. 60 IN CNAME mid.internal.",
		}, []string{"gone.internal."}},
		{"target under no suffix", []string{"alias.internal. 60 IN CNAME gone.example."}, nil},
		{"no chain from the query name", []string{"other.internal. 60 IN CNAME gone.internal."}, nil},
		{"chain loops", []string{"alias.internal. 60 IN CNAME b.internal.", "b.internal. 60 IN CNAME alias.internal."}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, tt.answer, nxSOA), probe: suffixExists}
			n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
			serve(t, h, up, nxQuery("Alias.internal.", dns.TypeA, ""))
			if got := remembered(n, ""); !slices.Equal(got, tt.want) {
				t.Fatalf("remembered %v, want %v", got, tt.want)
			}
			if _, fromUp := serve(t, h, up, nxQuery("alias.internal.", dns.TypeA, "")); !fromUp {
				t.Fatal("the query name of a chain was denied locally")
			}
		})
	}
}

func TestNXDomainNoErrorClears(t *testing.T) {
	t.Run("chain target came into existence", func(t *testing.T) {
		up := &nxUpstream{t: t, probe: suffixExists}
		up.query = answer(t, dns.RcodeNameError, []string{"alias.internal. 60 IN CNAME gone.internal."}, nxSOA)
		n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
		serve(t, h, up, nxQuery("alias.internal.", dns.TypeA, ""))
		if got := remembered(n, ""); !slices.Equal(got, []string{"gone.internal."}) {
			t.Fatalf("remembered %v", got)
		}
		up.query = answer(t, dns.RcodeSuccess, []string{"alias.internal. 60 IN CNAME gone.internal.", "gone.internal. 60 IN A 192.0.2.7"})
		serve(t, h, up, nxQuery("alias.internal.", dns.TypeA, ""))
		if got := remembered(n, ""); len(got) != 0 {
			t.Fatalf("remembered %v after the target resolved", got)
		}
	})
	t.Run("exact name answered while remembered", func(t *testing.T) {
		up := &nxUpstream{t: t}
		n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
		up.query = func(req *pipeline.Request) (*dns.Msg, error) {
			// A denial learned by a concurrent query in the meantime.
			n.store(nxKey{"", "new.internal."}, nil, time.Minute)
			return answer(t, dns.RcodeSuccess, []string{"new.internal. 60 IN A 192.0.2.8"})(req)
		}
		serve(t, h, up, nxQuery("New.Internal.", dns.TypeA, ""))
		if got := remembered(n, ""); len(got) != 0 {
			t.Fatalf("remembered %v after NOERROR", got)
		}
	})
}

func TestNXDomainRoutes(t *testing.T) {
	up := &nxUpstream{t: t}
	up.query = func(req *pipeline.Request) (*dns.Msg, error) {
		if req.Route == "a" {
			return answer(t, dns.RcodeNameError, nil, nxSOA)(req)
		}
		return answer(t, dns.RcodeSuccess, []string{"bad.internal. 60 IN A 192.0.2.1"})(req)
	}
	var probed sync.Map
	up.probe = func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
		probed.Store(req.Route, true)
		return suffixExists(ctx, req)
	}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
	serve(t, h, up, nxQuery("bad.internal.", dns.TypeA, "a"))
	tests := []struct {
		route  string
		wantUp bool
	}{
		{"a", false},
		{"b", true},
		{"", true},
		{"b", true},
	}
	for _, tt := range tests {
		t.Run("route "+tt.route, func(t *testing.T) {
			if _, fromUp := serve(t, h, up, nxQuery("bad.internal.", dns.TypeA, tt.route)); fromUp != tt.wantUp {
				t.Fatalf("from upstream = %v, want %v", fromUp, tt.wantUp)
			}
		})
	}
	waitProbes(t, n)
	if _, ok := probed.Load("a"); !ok || up.probes.Load() != 1 {
		t.Fatalf("%d probes, want one on route a", up.probes.Load())
	}
}

func TestNXDomainLRU(t *testing.T) {
	up := &nxUpstream{t: t, query: answer(t, dns.RcodeNameError, nil, nxSOA), probe: suffixExists}
	n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}, MaxEntries: 3}, newNXClock(), up)
	steps := []struct {
		qname  string
		wantUp bool
	}{
		{"n1.internal.", true},
		{"n2.internal.", true},
		{"n3.internal.", true},
		{"n1.internal.", false}, // n1 becomes the most recently used
		{"n4.internal.", true},  // evicts n2, the oldest
		{"n1.internal.", false},
		{"n3.internal.", false},
		{"n4.internal.", false},
		{"n2.internal.", true},
	}
	for i, st := range steps {
		if _, fromUp := serve(t, h, up, nxQuery(st.qname, dns.TypeA, "")); fromUp != st.wantUp {
			t.Fatalf("step %d %s: from upstream = %v, want %v", i, st.qname, fromUp, st.wantUp)
		}
	}
	if got := n.count.Load(); got != 3 {
		t.Fatalf("%d entries, want 3", got)
	}
}

func TestNXDomainUpstreamFailures(t *testing.T) {
	failure := &pipeline.Error{EDE: dns.ExtendedErrorCodeNoReachableAuthority, Err: pipeline.ErrUpstreamFailed}
	rcode := func(rc int) func(*pipeline.Request) (*dns.Msg, error) { return answer(t, rc, nil, nxSOA) }
	tests := []struct {
		name  string
		reply func(*pipeline.Request) (*dns.Msg, error)
	}{
		{"error", func(*pipeline.Request) (*dns.Msg, error) { return nil, failure }},
		{"SERVFAIL", rcode(dns.RcodeServerFailure)},
		{"REFUSED", rcode(dns.RcodeRefused)},
		{"NOERROR NODATA", rcode(dns.RcodeSuccess)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last *dns.Msg
			up := &nxUpstream{t: t, query: func(req *pipeline.Request) (*dns.Msg, error) {
				m, err := tt.reply(req)
				last = m
				return m, err
			}}
			n, h := newNX(t, NXDomainConfig{Suffixes: []string{"internal."}}, newNXClock(), up)
			for range 2 {
				m, err := h.ServeDNS(context.Background(), nxQuery("a.internal.", dns.TypeA, ""))
				if m != last || (err != nil) != (last == nil) || err != nil && err != error(failure) {
					t.Fatalf("got (%v, %v), want what next returned", m, err)
				}
			}
			if up.queries.Load() != 2 || n.count.Load() != 0 {
				t.Fatalf("%d queries upstream, %d entries; want 2, 0", up.queries.Load(), n.count.Load())
			}
		})
	}
}
