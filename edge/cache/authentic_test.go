package cache

import (
	"context"
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// flags is the DO, AD and CD bits of a query, in the manner of ISC's EDNS
// compliance tester (genreport).
type flags struct{ do, ad, cd bool }

func (f flags) String() string { return fmt.Sprintf("do=%v,ad=%v,cd=%v", f.do, f.ad, f.cd) }

func (f flags) request(t testing.TB) *pipeline.Request {
	req := query{do: f.do, cd: f.cd}.request(t)
	req.Msg.AuthenticatedData = f.ad
	return req
}

var allFlags = func() []flags {
	var out []flags
	for _, do := range []bool{false, true} {
		for _, ad := range []bool{false, true} {
			for _, cd := range []bool{false, true} {
				out = append(out, flags{do, ad, cd})
			}
		}
	}
	return out
}()

// validatingUpstream answers like a validating resolver on a signed
// zone: AD set exactly when the query had DO or AD (RFC 6840 §5.8), CD
// not echoed (so that the cache is seen to copy it).
func validatingUpstream(t testing.TB, secure bool) *fakeNext {
	return &fakeNext{t: t, serve: func(q *dns.Msg) (*dns.Msg, error) {
		m, err := upstream{answer: []string{aWWW}}.reply(t, q)
		m.CheckingDisabled = false
		opt := q.IsEdns0()
		m.AuthenticatedData = secure && (q.AuthenticatedData || opt != nil && opt.Do())
		return m, err
	}}
}

// TestAuthenticCached fills the cache with one query and asks again with
// every mix of DO, AD and CD: a cached answer has AD only when the first
// answer was authentic and the second query had DO or AD; the stored AD
// bit is never replayed, and CD is always the asking query's. Uncached
// queries (another DO or CD: another key) get what the upstream says.
func TestAuthenticCached(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{true, false} {
		for _, first := range allFlags {
			for _, second := range allFlags {
				name := fmt.Sprintf("secure=%v/%s/then/%s", secure, first, second)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					c := newCache(t, Config{})
					up := validatingUpstream(t, secure)
					h := c.Middleware()(up)
					if _, err := h.ServeDNS(context.Background(), first.request(t)); err != nil {
						t.Fatal(err)
					}
					req := second.request(t)
					m, err := h.ServeDNS(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					cached := first.do == second.do && first.cd == second.cd
					if got := up.calls.Load() == 1; got != cached {
						t.Fatalf("hit = %v, want %v", got, cached)
					}
					var wantAD bool
					switch {
					case !secure:
					case cached:
						// authentic only if the upstream could say so to
						// the first query
						wantAD = (first.do || first.ad) && (second.do || second.ad)
					default:
						wantAD = second.do || second.ad
					}
					if m.AuthenticatedData != wantAD {
						t.Errorf("AD = %v, want %v", m.AuthenticatedData, wantAD)
					}
					if cached && m.CheckingDisabled != second.cd {
						t.Errorf("CD = %v, want the query's %v", m.CheckingDisabled, second.cd)
					}
				})
			}
		}
	}
}

// TestAuthenticVerdict checks that an answer validated inside the cache
// is stored with its verdict: a hit reports the verdict and gets AD per
// query from it, whatever the reply's AD bit was when it was stored.
func TestAuthenticVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		verdict pipeline.DNSSECVerdict
		first   flags // the query that fills the cache
		second  flags
		wantAD  bool
	}{
		{"secure, filled without AD, asked with AD", pipeline.DNSSECSecure, flags{}, flags{ad: true}, true},
		{"secure, filled with AD, asked without", pipeline.DNSSECSecure, flags{ad: true}, flags{}, false},
		{"secure, DO both times", pipeline.DNSSECSecure, flags{do: true}, flags{do: true}, true},
		{"insecure asked with AD", pipeline.DNSSECInsecure, flags{ad: true}, flags{ad: true}, false},
		{"indeterminate asked with DO", pipeline.DNSSECIndeterminate, flags{do: true}, flags{do: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			up := &fakeNext{t: t}
			up.serve = func(q *dns.Msg) (*dns.Msg, error) {
				m, err := upstream{answer: []string{aWWW}}.reply(t, q)
				m.AuthenticatedData = true // a lie the cache must not replay
				return m, err
			}
			// A validating stage between cache and upstream.
			validating := pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				req.Outcome.DNSSEC = tt.verdict
				return up.ServeDNS(ctx, req)
			})
			h := c.Middleware()(validating)
			if _, err := h.ServeDNS(context.Background(), tt.first.request(t)); err != nil {
				t.Fatal(err)
			}
			req := tt.second.request(t)
			m, err := h.ServeDNS(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if up.calls.Load() != 1 || req.Outcome.Source != pipeline.SourceCache {
				t.Fatalf("not a hit: %d calls, source %v", up.calls.Load(), req.Outcome.Source)
			}
			if req.Outcome.DNSSEC != tt.verdict {
				t.Errorf("hit verdict = %v, want %v", req.Outcome.DNSSEC, tt.verdict)
			}
			if m.AuthenticatedData != tt.wantAD {
				t.Errorf("AD = %v, want %v", m.AuthenticatedData, tt.wantAD)
			}
		})
	}
}

// TestAuthenticCoalesced: queries that wait for an identical one in
// flight get AD by their own bits, from whether the leader's answer was
// authentic, and their own CD.
func TestAuthenticCoalesced(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		leader, waiter flags
		wantAD         bool
	}{
		{"AD leader, plain waiter", flags{ad: true}, flags{}, false},
		{"plain leader, AD waiter: authenticity unknown", flags{}, flags{ad: true}, false},
		{"AD leader, AD waiter", flags{ad: true}, flags{ad: true}, true},
		{"DO leader, DO+AD waiter with CD", flags{do: true, cd: true}, flags{do: true, ad: true, cd: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			gate := make(chan struct{})
			up := validatingUpstream(t, true)
			h := c.Middleware()(pipeline.HandlerFunc(func(ctx context.Context, req *pipeline.Request) (*dns.Msg, error) {
				<-gate
				return up.ServeDNS(ctx, req)
			}))
			lreq, wreq := tt.leader.request(t), tt.waiter.request(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.ServeDNS(context.Background(), lreq)
			}()
			waitFor(t, "leader in flight", func() bool { return c.waiters(t, lreq) == 0 })
			var m *dns.Msg
			var err error
			wdone := make(chan struct{})
			go func() {
				defer close(wdone)
				m, err = h.ServeDNS(context.Background(), wreq)
			}()
			waitFor(t, "waiter joined", func() bool { return c.waiters(t, lreq) == 1 })
			close(gate)
			<-done
			<-wdone
			if err != nil {
				t.Fatal(err)
			}
			if !wreq.Outcome.Coalesced || up.calls.Load() != 1 {
				t.Fatalf("not coalesced: %+v, %d calls", wreq.Outcome, up.calls.Load())
			}
			if m.AuthenticatedData != tt.wantAD || m.CheckingDisabled != tt.waiter.cd {
				t.Errorf("AD %v CD %v, want AD %v CD %v", m.AuthenticatedData, m.CheckingDisabled, tt.wantAD, tt.waiter.cd)
			}
		})
	}
}
