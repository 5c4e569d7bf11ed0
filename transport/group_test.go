package transport

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// withStream gives p a TCP side answering through fn.
func withStream(t *testing.T, fc *clockwork.FakeClock, p *Path, fn func(context.Context, *dns.Msg) (*dns.Msg, error)) *Path {
	hc := testHealth
	hc.Now = fc.Now
	p.Stream = &Path{
		ID: PathID{Upstream: p.ID.Upstream, Proto: "tcp", Addr: p.ID.Addr}, Family: p.Family,
		Exchanger: &fakeExchanger{t: t, exchange: fn}, Health: NewHealth(hc),
	}
	return p
}

func truncated(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Truncated = true
	return m, nil
}

func bigAnswer(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{strings.Repeat("x", 250)}})
	return m, nil
}

// TestTruncatedRetry: a truncated UDP answer is retried over the path's
// TCP side as an exchange of its own. The UDP path is credited with a
// success (it answered); the TCP outcome goes to the TCP side's health and
// never counts against the UDP path.
func TestTruncatedRetry(t *testing.T) {
	tests := []struct {
		name       string
		stream     func(context.Context, *dns.Msg) (*dns.Msg, error)
		wantFrom   string // "tcp" or the next path's upstream
		wantStream Class  // the TCP side's one outcome
	}{
		{"the retry answers", bigAnswer, "tcp", ClassOK},
		{"the retry fails: the next path answers, UDP stays clean", refused, "b", ClassNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			a := withStream(t, fc, testPath(t, fc, "a", IPv6, truncated), tt.stream)
			b := withStream(t, fc, testPath(t, fc, "b", IPv4, truncated), bigAnswer)
			if tt.wantFrom == "tcp" {
				b.Exchanger.(*fakeExchanger).exchange = nil // never reached
			}
			res, err := race(context.Background(), query(), nil, cands(a, b), false, RaceConfig{Clock: fc}.withDefaults())
			if err != nil || res.Msg.Truncated || len(res.Msg.Answer) != 1 {
				t.Fatalf("race = %v, %v; want the whole answer", res.Msg, err)
			}
			want := a.Stream
			if tt.wantFrom == "b" {
				want = b.Stream
			}
			if res.Path != want {
				t.Fatalf("answered by %s, want %s", res.Path, want)
			}
			ua, sa := a.Health.Snapshot(), a.Stream.Health.Snapshot()
			if ua.Outcomes[ClassOK] != 1 || ua.Consecutive != 0 || ua.Outcomes[ClassTruncated] != 0 {
				t.Errorf("UDP side outcomes %v, consecutive %d: want one ok", ua.Outcomes, ua.Consecutive)
			}
			if sa.Outcomes[tt.wantStream] != 1 {
				t.Errorf("TCP side outcomes %v, want one %s", sa.Outcomes, tt.wantStream)
			}
		})
	}
}

// TestRetryBudget: a TC retry gets the TCP side's timeout plus a
// handshake, both from the UDP path's estimate until the TCP side has its
// own: on a 150ms path that is enough for a handshake and a query (about
// 300ms), which the UDP attempt's own timeout is not.
func TestRetryBudget(t *testing.T) {
	fc := clockwork.NewFakeClock()
	udp := withStream(t, fc, testPath(t, fc, "a", IPv6, nil), nil)
	for range 8 {
		udp.Health.Observe(150*time.Millisecond, ClassOK)
	}
	udp.Stream.Health = NewHealth(HealthConfig{MinTimeout: 100 * time.Millisecond, MaxTimeout: 2 * time.Second, Now: fc.Now})
	c := candidate{p: udp.Stream, prior: udp.Health.Estimate()}
	got := retryBudget(c)
	if got < 300*time.Millisecond || got > 500*time.Millisecond {
		t.Fatalf("retry budget on a 150ms path = %v, want 300ms to 500ms", got)
	}
	if rto := udp.Health.RTO(); rto >= 300*time.Millisecond {
		t.Fatalf("UDP RTO %v: the test no longer shows the difference", rto)
	}
}

// TestGroupOrder: demoted paths go after the others; within an upstream a
// family significantly faster by measured RTT goes first, else the
// configured preference; unmeasured paths borrow a sibling's estimate.
func TestGroupOrder(t *testing.T) {
	type pathSpec struct {
		name    string // upstream name + family digit, e.g. "a6"
		rtt     time.Duration
		lossy   bool
		unmeasd bool
	}
	tests := []struct {
		name  string
		paths []pathSpec // in each upstream's configured order (preferred first)
		want  string
	}{
		{"measured alike: configured order", []pathSpec{{"a6", ms(1), false, false}, {"a4", ms(1), false, false}, {"b6", ms(1), false, false}, {"b4", ms(1), false, false}},
			"a6 a4 b6 b4"},
		{"IPv6 150ms slower: IPv4 first", []pathSpec{{"a6", ms(151), false, false}, {"a4", ms(1), false, false}},
			"a4 a6"},
		{"IPv6 slower but within the margin: preference kept", []pathSpec{{"a6", ms(9), false, false}, {"a4", ms(1), false, false}},
			"a6 a4"},
		{"IPv6 slower but within the ratio: preference kept", []pathSpec{{"a6", ms(30), false, false}, {"a4", ms(20), false, false}},
			"a6 a4"},
		{"IPv6 not measured yet: the measured IPv4 first", []pathSpec{{"a6", 0, false, true}, {"a4", ms(1), false, false}},
			"a4 a6"},
		{"lossy IPv6 paths demoted behind every good path", []pathSpec{{"a6", ms(1), true, false}, {"a4", ms(1), false, false}, {"b6", ms(1), true, false}, {"b4", ms(1), false, false}},
			"a4 b4 a6 b6"},
		{"a lossy upstream demoted behind the next", []pathSpec{{"a6", ms(1), true, false}, {"a4", ms(1), true, false}, {"b6", ms(1), false, false}, {"b4", ms(1), false, false}},
			"b6 b4 a6 a4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			ups := map[string]*Upstream{}
			var order []string
			for _, ps := range tt.paths {
				fam := IPv4
				if ps.name[1] == '6' {
					fam = IPv6
				}
				p := testPath(t, fc, ps.name[:1], fam, nil)
				p.ID.Proto = ps.name // tell the paths apart in the result
				p.Health = NewHealth(HealthConfig{Now: fc.Now})
				if !ps.unmeasd {
					p.Health.Observe(ps.rtt, ClassOK)
				}
				if ps.lossy {
					for range 4 {
						p.Health.Observe(0, ClassTimeout)
					}
				}
				up := ups[ps.name[:1]]
				if up == nil {
					up = &Upstream{Name: ps.name[:1]}
					up.paths.Store(&[]*Path{})
					ups[ps.name[:1]] = up
					order = append(order, ps.name[:1])
				}
				cur := append(*up.paths.Load(), p)
				up.paths.Store(&cur)
			}
			var us []*Upstream
			for _, n := range order {
				us = append(us, ups[n])
			}
			g := NewGroup("g", sequential{}, RaceConfig{Clock: fc}, us...)
			var got []string
			for _, c := range g.order() {
				got = append(got, c.p.ID.Proto)
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Fatalf("order = %s, want %s", s, tt.want)
			}
		})
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// TestPrior: an unmeasured path borrows its upstream's other family first,
// then the fastest measured path of the group.
func TestPrior(t *testing.T) {
	fc := clockwork.NewFakeClock()
	mk := func(up string, fam Family, rtt time.Duration) *Path {
		p := testPath(t, fc, up, fam, nil)
		p.Health = NewHealth(HealthConfig{Now: fc.Now})
		if rtt > 0 {
			p.Health.Observe(rtt, ClassOK)
		}
		return p
	}
	a6, a4 := mk("a", IPv6, 0), mk("a", IPv4, 30*time.Millisecond)
	b6, b4 := mk("b", IPv6, 0), mk("b", IPv4, 0)
	c4 := mk("c", IPv4, 5*time.Millisecond)
	var rs []ranked
	for _, p := range []*Path{a6, a4, b6, b4, c4} {
		rs = append(rs, ranked{p, p.Health.Rank()})
	}
	if got := prior(a6, rs).SRTT; got != 30*time.Millisecond {
		t.Errorf("a6 borrows %v, want its sibling's 30ms", got)
	}
	if got := prior(b6, rs).SRTT; got != 5*time.Millisecond {
		t.Errorf("b6 borrows %v, want the group's fastest 5ms", got)
	}
	if got := (candidate{p: a6, prior: prior(a6, rs)}).timeout(); got != 100*time.Millisecond {
		t.Errorf("a6's timeout = %v, want 30ms+4·15ms clamped to min_timeout 100ms", got)
	}
}

// TestGroupKeepsTryingWhileTheBudgetLasts: an upstream that drops most
// UDP queries (response rate limiting) is asked again round after round,
// every second round over TCP, until an answer comes; SERVFAIL only when
// the client's budget is spent.
func TestGroupKeepsTryingWhileTheBudgetLasts(t *testing.T) {
	tests := []struct {
		name     string
		tcp      func(context.Context, *dns.Msg) (*dns.Msg, error)
		wantErr  bool
		minTries int32 // UDP attempts at least
	}{
		{"TCP answers in the second round", answer(dns.RcodeSuccess), false, 1},
		{"nothing answers: the budget is spent, then an error", blackhole, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			var udpTries atomic.Int32
			p := testPath(t, fc, "lone", IPv4, func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
				udpTries.Add(1)
				return blackhole(ctx, q)
			})
			withStream(t, fc, p, tt.tcp)
			up := &Upstream{Name: "lone"}
			up.paths.Store(&[]*Path{p})
			g := NewGroup("g", sequential{}, RaceConfig{Clock: fc}, up)
			ctx, cancel := clockwork.WithTimeout(context.Background(), fc, 4*time.Second)
			defer cancel()
			start := fc.Now()
			var res Result
			var err error
			drive(t, fc, func() { res, err = g.Exchange(ctx, query()) })
			if tt.wantErr {
				if err == nil {
					t.Fatalf("answer %v, want an error once the budget is spent", res.Msg)
				}
				if spent := fc.Since(start); spent < 4*time.Second-100*time.Millisecond {
					t.Fatalf("gave up after %v of a 4s budget", spent)
				}
			} else if err != nil || res.Path != p.Stream {
				t.Fatalf("Exchange = %v, %v; want the TCP side's answer", res.Path, err)
			}
			if n := udpTries.Load(); n < tt.minTries {
				t.Errorf("%d UDP attempts, want at least %d", n, tt.minTries)
			}
		})
	}
}
