package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// fakeExchanger answers through its function field; an unset field fails.
type fakeExchanger struct {
	t        *testing.T
	exchange func(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
	calls    atomic.Int32
}

func (f *fakeExchanger) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	f.calls.Add(1)
	if f.exchange == nil {
		f.t.Error("unexpected Exchange")
		return nil, errors.New("unexpected")
	}
	return f.exchange(ctx, q)
}
func (f *fakeExchanger) Close() error { return nil }

func answer(rcode int) func(context.Context, *dns.Msg) (*dns.Msg, error) {
	return func(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetRcode(q, rcode)
		return m, nil
	}
}

func blackhole(ctx context.Context, _ *dns.Msg) (*dns.Msg, error) {
	<-ctx.Done()
	return nil, &ExchangeError{Class: ClassTimeout, Err: ctx.Err()}
}

func refused(context.Context, *dns.Msg) (*dns.Msg, error) {
	return nil, &ExchangeError{Class: ClassNetwork, Err: syscall.ECONNREFUSED}
}

var testHealth = HealthConfig{FailureThreshold: 2, Cooldown: time.Hour, MinTimeout: 50 * time.Millisecond, MaxTimeout: 200 * time.Millisecond, InitialTimeout: 100 * time.Millisecond}

func testPath(t *testing.T, fc *clockwork.FakeClock, name string, fam Family, fn func(context.Context, *dns.Msg) (*dns.Msg, error)) *Path {
	addr := netip.MustParseAddrPort("127.0.0.1:53")
	if fam == IPv6 {
		addr = netip.MustParseAddrPort("[::1]:53")
	}
	hc := testHealth
	hc.Now = fc.Now
	return &Path{
		ID: PathID{Upstream: name, Proto: "udp", Addr: addr}, Family: fam,
		Exchanger: &fakeExchanger{t: t, exchange: fn}, Health: NewHealth(hc),
	}
}

func query() *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	return q
}

// cands makes a race order of paths, without priors.
func cands(paths ...*Path) []candidate {
	out := make([]candidate, len(paths))
	for i, p := range paths {
		out[i] = candidate{p: p}
	}
	return out
}

func calls(p *Path) int { return int(p.Exchanger.(*fakeExchanger).calls.Load()) }

func TestRace(t *testing.T) {
	tests := []struct {
		name      string
		paths     func(t *testing.T, fc *clockwork.FakeClock) []*Path
		parallel  bool
		wantFrom  string // upstream name of the winning path; "" expects an error
		wantRcode int
		wantCalls []int
		// wantConsec, when set, is each path's consecutive failure count
		// once the losers have finished.
		wantConsec []int
	}{
		{name: "first path answers, the rest never start",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a6", IPv6, answer(dns.RcodeSuccess)), testPath(t, fc, "a4", IPv4, nil)}
			},
			wantFrom: "a6", wantCalls: []int{1, 0}, wantConsec: []int{0, 0}},
		{name: "blackholed first path: the next starts after the attempt delay and wins; the loser is timed out on its own",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a6", IPv6, blackhole), testPath(t, fc, "a4", IPv4, answer(dns.RcodeSuccess))}
			},
			wantFrom: "a4", wantCalls: []int{1, 1}, wantConsec: []int{1, 0}},
		{name: "hard failure starts the next at once",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a6", IPv6, refused), testPath(t, fc, "a4", IPv4, answer(dns.RcodeSuccess))}
			},
			wantFrom: "a4", wantCalls: []int{1, 1}, wantConsec: []int{1, 0}},
		{name: "SERVFAIL moves on, and is the answer when nothing better comes",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a", IPv4, answer(dns.RcodeServerFailure)), testPath(t, fc, "b", IPv4, refused)}
			},
			wantFrom: "a", wantRcode: dns.RcodeServerFailure, wantCalls: []int{1, 1}, wantConsec: []int{0, 1}},
		{name: "NXDOMAIN is a good answer",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a", IPv4, answer(dns.RcodeNameError)), testPath(t, fc, "b", IPv4, nil)}
			},
			wantFrom: "a", wantRcode: dns.RcodeNameError, wantCalls: []int{1, 0}},
		{name: "every path fails: an error naming them",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a", IPv4, refused), testPath(t, fc, "b", IPv6, refused)}
			},
			wantCalls: []int{1, 1}, wantConsec: []int{1, 1}},
		{name: "parallel starts everything at once",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				return []*Path{testPath(t, fc, "a", IPv4, blackhole), testPath(t, fc, "b", IPv4, blackhole), testPath(t, fc, "c", IPv6, answer(dns.RcodeSuccess))}
			},
			parallel: true, wantFrom: "c", wantCalls: []int{1, 1, 1}, wantConsec: []int{1, 1, 0}},
		{name: "an open breaker is skipped while another path works",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				ps := []*Path{testPath(t, fc, "a6", IPv6, nil), testPath(t, fc, "a4", IPv4, answer(dns.RcodeSuccess))}
				ps[0].Health.Observe(0, ClassNetwork)
				ps[0].Health.Observe(0, ClassNetwork)
				return ps
			},
			wantFrom: "a4", wantCalls: []int{0, 1}},
		{name: "every breaker open: the one open longest is still tried",
			paths: func(t *testing.T, fc *clockwork.FakeClock) []*Path {
				ps := []*Path{testPath(t, fc, "young", IPv6, nil), testPath(t, fc, "old", IPv4, answer(dns.RcodeSuccess))}
				ps[1].Health.Observe(0, ClassNetwork)
				ps[1].Health.Observe(0, ClassNetwork)
				fc.Advance(2 * time.Millisecond) // opened at distinct times
				ps[0].Health.Observe(0, ClassNetwork)
				ps[0].Health.Observe(0, ClassNetwork)
				return ps
			},
			wantFrom: "old", wantCalls: []int{0, 1}, wantConsec: []int{2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			rc := RaceConfig{MaxAttemptDelay: 40 * time.Millisecond, Clock: fc}.withDefaults()
			paths := tt.paths(t, fc)
			ctx, cancel := clockwork.WithTimeout(context.Background(), fc, 2*time.Second)
			defer cancel()
			var res Result
			var err error
			drive(t, fc, func() { res, err = race(ctx, query(), nil, cands(paths...), tt.parallel, rc) })
			if tt.wantFrom == "" {
				var re *RaceError
				if !errors.As(err, &re) || len(re.Errs) != len(paths) {
					t.Fatalf("err = %v, want a RaceError with %d errors", err, len(paths))
				}
			} else {
				if err != nil {
					t.Fatalf("race: %v", err)
				}
				if res.Path.ID.Upstream != tt.wantFrom || res.Msg.Rcode != tt.wantRcode {
					t.Fatalf("answered by %s rcode %d, want %s rcode %d", res.Path.ID.Upstream, res.Msg.Rcode, tt.wantFrom, tt.wantRcode)
				}
			}
			waitForClock(t, fc, func() bool { // losers run to their own timeout
				for i, p := range paths {
					if tt.wantConsec != nil && p.Health.Snapshot().Consecutive != tt.wantConsec[i] {
						return false
					}
				}
				return true
			})
			for i, p := range paths {
				if got := calls(p); got != tt.wantCalls[i] {
					t.Errorf("path %s: %d calls, want %d", p, got, tt.wantCalls[i])
				}
			}
		})
	}
}

// TestRaceKeepsTheClientDeadline: one silent path with a timeout longer
// than the client's budget (the attempt runs on the caller's goroutine):
// the race ends at the client's deadline, and the cut-short attempt does
// not count against the path. A client that goes away early cancels
// nothing: its attempt still runs to that deadline.
func TestRaceKeepsTheClientDeadline(t *testing.T) {
	for _, cancelEarly := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancel=%v", cancelEarly), func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			rc := RaceConfig{MaxAttemptDelay: 40 * time.Millisecond, Clock: fc}.withDefaults()
			var ended atomic.Int64
			p := testPath(t, fc, "silent", IPv4, func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
				defer func() { ended.Store(fc.Now().UnixNano()) }()
				return blackhole(ctx, q)
			})
			start := fc.Now()
			ctx, cancel := clockwork.WithTimeout(context.Background(), fc, 30*time.Millisecond)
			defer cancel()
			if cancelEarly {
				cancel()
			}
			var err error
			drive(t, fc, func() { _, err = race(ctx, query(), nil, cands(p), false, rc) })
			if err == nil {
				t.Fatal("a silent path answered")
			}
			waitForClock(t, fc, func() bool { return ended.Load() != 0 })
			if took := time.Duration(ended.Load() - start.UnixNano()); took > 35*time.Millisecond {
				t.Errorf("the attempt ran %v, past the client's 30ms deadline (path timeout %v)", took, testHealth.InitialTimeout)
			}
			if c := p.Health.Snapshot().Consecutive; c != 0 {
				t.Errorf("the attempt cut short by the client's deadline counted as %d failures of the path", c)
			}
		})
	}
}

// TestRaceDeadlineRealClock: the same on the real clock, whose timeout
// contexts are the standard library's: a child deadline later than its
// parent's relies on the parent to end it, so an attempt's context must
// not claim the client's deadline without its cancellation.
func TestRaceDeadlineRealClock(t *testing.T) {
	rc := RaceConfig{MaxAttemptDelay: 40 * time.Millisecond, Clock: clockwork.NewRealClock()}.withDefaults()
	hc := testHealth
	hc.InitialTimeout, hc.MinTimeout, hc.MaxTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	p := &Path{ID: PathID{Upstream: "silent", Proto: "udp", Addr: netip.MustParseAddrPort("127.0.0.1:53")}, Family: IPv4,
		Exchanger: &fakeExchanger{t: t, exchange: blackhole}, Health: NewHealth(hc)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := race(ctx, query(), nil, cands(p), false, rc); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a silent path answered")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("the race took %v for a 50ms client budget", took)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the race did not end at the client's deadline (the path's timeout is 5s)")
	}
}

// TestRaceTrialDoesNotDelayTheClient: a half-open path's trial runs beside
// the best healthy path, so a still-broken path costs the client nothing.
func TestRaceTrialDoesNotDelayTheClient(t *testing.T) {
	fc := clockwork.NewFakeClock()
	broken := testPath(t, fc, "v6", IPv6, blackhole)
	good := testPath(t, fc, "v4", IPv4, answer(dns.RcodeSuccess))
	// The broken path's timeout is long, so a client that waited for the
	// trial would wait at least 500ms.
	h := NewHealth(HealthConfig{FailureThreshold: 1, Cooldown: time.Millisecond, MinTimeout: 500 * time.Millisecond, MaxTimeout: time.Second, Now: fc.Now})
	broken.Health = h
	h.Observe(0, ClassTimeout)
	fc.Advance(5 * time.Millisecond) // cooldown passes
	start := fc.Now()
	// The clock does not move while the race runs: the client's answer
	// must come without waiting for the trial at all.
	res, err := race(context.Background(), query(), nil, cands(broken, good), false, RaceConfig{MaxAttemptDelay: time.Second, Clock: fc}.withDefaults())
	if err != nil || res.Path != good {
		t.Fatalf("race: %v, path %v", err, res.Path)
	}
	if d := fc.Since(start); d != 0 {
		t.Fatalf("client waited %v for a trial", d)
	}
	waitForClock(t, fc, func() bool { return calls(broken) == 1 && h.Snapshot().State == Open })
}

func TestInterleave(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"6a", "6a"},
		{"6a 6b 4a 4b", "6a 4a 6b 4b"},
		{"4a 6a 6b", "4a 6a 6b"},
		{"4a 4b 4c 6a", "4a 6a 4b 4c"},
		{"6a 4a 6b 4b", "6a 4a 6b 4b"},
	}
	for _, tt := range tests {
		var in []*Path
		for _, f := range strings.Fields(tt.in) {
			fam := IPv4
			if f[0] == '6' {
				fam = IPv6
			}
			in = append(in, &Path{ID: PathID{Upstream: f}, Family: fam})
		}
		var got []string
		for _, p := range interleave(in) {
			got = append(got, p.ID.Upstream)
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("interleave(%s) = %s, want %s", tt.in, g, tt.want)
		}
	}
}

// TestFastestOrdersBySRTT: measured paths by SRTT, unmeasured ones after
// them in configured order, and no client query is spent exploring.
func TestFastestOrdersBySRTT(t *testing.T) {
	fc := clockwork.NewFakeClock()
	mk := func(name string, rtt time.Duration) *Path {
		p := testPath(t, fc, name, IPv4, nil)
		if rtt > 0 {
			p.Health.Observe(rtt, ClassOK)
		}
		return p
	}
	paths := []*Path{mk("slow", 30*time.Millisecond), mk("new", 0), mk("fast", time.Millisecond), mk("new2", 0), mk("mid", 10*time.Millisecond)}
	s, _ := NewStrategy("fastest")
	for range 64 {
		var names []string
		for _, p := range s.Order(paths) {
			names = append(names, p.ID.Upstream)
		}
		if got := strings.Join(names, " "); got != "fast mid slow new new2" {
			t.Fatalf("order = %s, want fast mid slow new new2", got)
		}
	}
}

// drive runs fn while moving fc forward a millisecond at a time, so the
// attempts' timeouts and the hedge timers fire on the fake clock, and
// returns when fn has.
func drive(t *testing.T, fc *clockwork.FakeClock, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		if i > 1e6 {
			t.Fatal("fn did not return within 1000s of fake time")
		}
		// Let the goroutines that are runnable reach their timers before
		// the clock moves on: fake time runs at most ten times as fast as
		// real time, so nothing here waits for a timeout to pass.
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
		fc.Advance(time.Millisecond)
	}
}

// waitForClock is waitFor while the fake clock moves on.
func waitForClock(t *testing.T, fc *clockwork.FakeClock, cond func() bool) {
	t.Helper()
	drive(t, fc, func() { waitFor(t, cond) })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRaceLateLoserStaysInItsRace: a loser that reports after its race
// returned reports into that race's channel, never into a later race's.
// The first race hedges from a slow path to a fast one, which wins; the
// slow path answers during the second race, whose own path holds its
// answer back until then.
func TestRaceLateLoserStaysInItsRace(t *testing.T) {
	fc := clockwork.NewFakeClock()
	rc := RaceConfig{MaxAttemptDelay: 40 * time.Millisecond, Clock: fc}.withDefaults()
	release, slowDone := make(chan struct{}), make(chan struct{})
	slow := testPath(t, fc, "slow", IPv4, func(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
		defer close(slowDone)
		<-release
		return answer(dns.RcodeSuccess)(nil, q)
	})
	fast := testPath(t, fc, "fast", IPv6, answer(dns.RcodeSuccess))
	ctx, cancel := clockwork.WithTimeout(context.Background(), fc, 2*time.Second)
	defer cancel()
	var res Result
	var err error
	drive(t, fc, func() { res, err = race(ctx, query(), nil, cands(slow, fast), false, rc) })
	if err != nil || res.Path != fast {
		t.Fatalf("first race: %v from %v, want the fast path's answer", err, res.Path)
	}
	a := testPath(t, fc, "a", IPv4, func(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
		close(release)
		<-slowDone
		time.Sleep(20 * time.Millisecond) // the slow attempt reports
		return answer(dns.RcodeSuccess)(nil, q)
	})
	b := testPath(t, fc, "b", IPv6, blackhole)
	drive(t, fc, func() { res, err = race(ctx, query(), nil, cands(a, b), false, rc) })
	if err != nil || res.Path != a {
		t.Fatalf("second race: %v from %v, want path a's answer", err, res.Path)
	}
}
