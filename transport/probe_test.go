package transport

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dnsedge/dnsedge/transport/transporttest"
	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// probeZone answers the default probe, ". NS".
const probeZone = ". 3600 IN NS ns.test.\nns.test. 3600 IN A 127.0.0.1\n"

// probeStep is how far the probe tests move the fake clock at a time, for
// a probe interval of a second: every round then happens at the end of a
// step, at most a step later than its timer asked.
const probeStep = time.Second / 40

// probeClock is the fake clock of the probe tests. Wrapping hides the
// *clockwork.FakeClock from clockwork.WithTimeout, so the timeout of a
// probe's exchange (exchangeOn) runs on real time, as it bounds a real
// socket: on the fake clock it would fire whenever a test moved the clock
// with a probe under way, and it would stay among the clock's waiters
// after the probe (clockwork does not stop it on cancel), spoiling the
// count that BlockUntilContext waits for. The prober's and re-resolution's
// timers and every reading of the time stay fake.
type probeClock struct{ *clockwork.FakeClock }

// probeRig is an upstream on a fake clock whose paths lead to a fault
// server.
type probeRig struct {
	t   *testing.T
	fc  *clockwork.FakeClock
	srv *transporttest.Server
	reg *Registry
	u   *Upstream
	// sleepers is how many fake timers the upstream holds between rounds:
	// the prober's, and re-resolution's for a host name.
	sleepers int
	// observed counts the exchanges the test reported itself, per path.
	observed map[PathID]uint64
}

type probeRigConfig struct {
	zone     string
	faults   transporttest.Faults
	interval time.Duration // ProbeSpec.Interval
	cooldown time.Duration // HealthConfig.Cooldown; the default when 0
	// literal makes the upstream udp://127.0.0.1:port, one path; otherwise
	// it is udp://dns.test:port, which resolves to 127.0.0.1 and ::1.
	literal bool
}

// newProbeRig builds the upstream without starting it, so a test can set
// up path health first.
func newProbeRig(t *testing.T, cfg probeRigConfig) *probeRig {
	t.Helper()
	srv := transporttest.StartFault(t, cfg.zone)
	srv.Set(cfg.faults)
	fc := clockwork.NewFakeClock()
	// Probe timeouts run on real time (probeClock): keep them far above a
	// loopback round trip under the race detector.
	reg := NewRegistry(HealthConfig{Now: fc.Now, Cooldown: cfg.cooldown, MinTimeout: time.Second}, nil)
	deps := UpstreamDeps{Registry: reg, Logger: slog.New(slog.DiscardHandler), Clock: probeClock{fc},
		Probe: ProbeSpec{Interval: cfg.interval}}
	ep := Endpoint{Scheme: "udp", Host: "dns.test", Port: srv.Port()}
	r := &probeRig{t: t, fc: fc, srv: srv, reg: reg, observed: make(map[PathID]uint64)}
	if cfg.literal {
		ep.Host, ep.Addr = "", srv.AddrV4().Addr()
	} else {
		boot := transporttest.StartBootstrap(t, "dns.test. 3600 IN A 127.0.0.1\ndns.test. 3600 IN AAAA ::1\n")
		resolver := NewBootstrap([]netip.AddrPort{boot.Addr()})
		t.Cleanup(func() { resolver.Close() })
		deps.Resolver = resolver
		r.sleepers++
	}
	if cfg.interval >= 0 {
		r.sleepers++
	}
	u, err := NewUpstream(UpstreamConfig{Name: "up", Endpoint: ep}, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	r.u = u
	return r
}

// id is the path id of the upstream's UDP path to the server over family.
func (r *probeRig) id(f Family) PathID {
	a := r.srv.AddrV4()
	if f == IPv6 {
		a = r.srv.AddrV6()
	}
	return PathID{Upstream: "up", Proto: "udp", Addr: a}
}

func (r *probeRig) health(f Family) *Health { return r.reg.Health(r.id(f)) }

// observe reports a client exchange on the path of family f, now by the
// fake clock.
func (r *probeRig) observe(f Family, class Class) {
	r.health(f).Observe(time.Millisecond, class)
	r.observed[r.id(f)]++
}

func (r *probeRig) start() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.u.Start(ctx); err != nil {
		r.t.Fatal(err)
	}
	r.sleep()
}

// sleep returns once the upstream waits on its timers again: a round that
// the clock set off has finished and has counted the probes it sent.
func (r *probeRig) sleep() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.fc.BlockUntilContext(ctx, r.sleepers); err != nil {
		r.t.Fatalf("the upstream did not wait on its %d timers again: %v", r.sleepers, err)
	}
}

// settle waits until every probe sent has been observed in its path's
// health: a real round trip, or a real timeout.
func (r *probeRig) settle() {
	r.t.Helper()
	for _, p := range r.u.Paths() {
		probeWait(r.t, "probe outcomes on "+p.String(), func() bool {
			s := p.Health.Snapshot()
			var n uint64
			for _, o := range s.Outcomes {
				n += o
			}
			return n == s.Events[EventProbe]+r.observed[p.ID]
		})
	}
}

// step moves the fake clock on by d and returns when the round that set
// off, if any, has finished with all its probes.
func (r *probeRig) step(d time.Duration) {
	r.t.Helper()
	r.fc.Advance(d)
	r.sleep()
	r.settle()
}

// probeWait polls cond, which waits on real sockets, for up to 5s.
func probeWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func probesOn(h *Health) uint64 { return h.Snapshot().Events[EventProbe] }

// TestProbeFirstRound: right after Start, within the first round's jitter,
// every path of an upstream is probed once, so the standby path has an RTT
// before a failover needs it; and an answer of REFUSED, whether a server
// authoritative for other names gives it or a fault does, is a working
// path: the breaker stays closed and the RTT is sampled.
func TestProbeFirstRound(t *testing.T) {
	t.Parallel()
	// The server holds each probe's answer while the fake clock moves on
	// by rtt, which is then what the probe measures.
	const (
		hold = 300 * time.Millisecond
		rtt  = 3 * time.Millisecond
	)
	tests := []struct {
		name   string
		zone   string
		faults transporttest.Faults
		class  Class
	}{
		{"an answer", probeZone, transporttest.Faults{}, ClassOK},
		{"REFUSED by an authoritative server for another zone",
			"$ORIGIN example.\n$TTL 60\n@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 30\n@ IN NS ns.example.\n",
			transporttest.Faults{}, ClassRcode},
		{"REFUSED for every query", probeZone, transporttest.Faults{Rcode: dns.RcodeRefused}, ClassRcode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			faults := tt.faults
			faults.Delay = hold
			r := newProbeRig(t, probeRigConfig{zone: tt.zone, faults: faults, interval: time.Second})
			r.start()
			r.fc.Advance(firstProbeWithin)
			r.sleep()
			for _, f := range []Family{IPv6, IPv4} {
				if n := probesOn(r.health(f)); n != 1 {
					t.Fatalf("%s path: %d probes in the first round, want 1", f, n)
				}
			}
			probeWait(t, "probes at the server", func() bool {
				return r.srv.Count("ipv6", "udp") == 1 && r.srv.Count("ipv4", "udp") == 1
			})
			r.fc.Advance(rtt)
			r.sleep()
			r.settle()
			for _, f := range []Family{IPv6, IPv4} {
				h := r.health(f)
				s := h.Snapshot()
				if s.Events[EventProbe] != 1 || s.Outcomes[tt.class] != 1 {
					t.Errorf("%s path: %d probes, %d outcomes %s; want 1 and 1", f, s.Events[EventProbe], s.Outcomes[tt.class], tt.class)
				}
				if s.State != Closed || s.Consecutive != 0 {
					t.Errorf("%s path: breaker %s with %d failures, want closed with none", f, s.State, s.Consecutive)
				}
				if e := h.Estimate(); !e.Known() || e.SRTT != rtt {
					t.Errorf("%s path: estimate %+v, want SRTT %s", f, e, rtt)
				}
			}
			if v4, v6, tcp := r.srv.Count("ipv4", "udp"), r.srv.Count("ipv6", "udp"), r.srv.Count("ipv4", "tcp")+r.srv.Count("ipv6", "tcp"); v4 != 1 || v6 != 1 || tcp != 0 {
				t.Errorf("server got %d, %d and %d queries over IPv4, IPv6 and TCP; want 1, 1 and 0", v4, v6, tcp)
			}
		})
	}
}

// TestProbeIdlePathOncePerInterval: a path with client traffic is never
// probed; an idle one is probed once per interval, never more often, and
// late by no more than the prober's jitter (a sixteenth of the interval)
// and the test's step.
func TestProbeIdlePathOncePerInterval(t *testing.T) {
	t.Parallel()
	const (
		iv        = time.Second
		intervals = 10
	)
	r := newProbeRig(t, probeRigConfig{zone: probeZone, interval: iv})
	r.observe(IPv6, ClassOK) // the active path: its health outlives reloads, so it exists before Start
	r.start()
	busy, idle := r.health(IPv6), r.health(IPv4)
	var at []time.Duration // when each probe on the idle path was sent
	for elapsed := probeStep; elapsed <= intervals*iv; elapsed += probeStep {
		r.step(probeStep)
		if n := probesOn(idle); n > uint64(len(at)) {
			if n > uint64(len(at))+1 {
				t.Fatalf("%d probes on the idle path at once, %s after Start", n-uint64(len(at)), elapsed)
			}
			at = append(at, elapsed)
		}
		r.observe(IPv6, ClassOK)
	}
	if n, sent := probesOn(busy), r.srv.Count("ipv6", "udp"); n != 0 || sent != 0 {
		t.Errorf("the path with client traffic was probed: %d probes, %d queries at the server", n, sent)
	}
	if len(at) == 0 {
		t.Fatal("the idle path was never probed")
	}
	if at[0] != probeStep {
		t.Errorf("first probe of the idle path %s after Start, want in the first round (%s)", at[0], probeStep)
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i] - at[i-1]; gap < iv || gap > iv+iv/16+probeStep {
			t.Errorf("probes %d and %d of the idle path %s apart, want %s to %s", i-1, i, gap, iv, iv+iv/16+probeStep)
		}
	}
	// Probe k comes at most k·(iv + iv/16 + probeStep) after the first,
	// never before k·iv: over 10 intervals, exactly 10 probes.
	if len(at) != intervals || r.srv.Count("ipv4", "udp") != intervals {
		t.Errorf("idle path: %d probes at %v, %d queries at the server; want %d in %d intervals",
			len(at), at, r.srv.Count("ipv4", "udp"), intervals, intervals)
	}
	if s := idle.Snapshot(); s.Outcomes[ClassOK] != uint64(len(at)) || s.State != Closed {
		t.Errorf("idle path: %d good probes of %d, breaker %s", s.Outcomes[ClassOK], len(at), s.State)
	}
}

// TestProbeOpenBreaker: while a path's breaker is open it is not probed,
// however long it has been idle; once the cooldown has passed the probe is
// the half-open trial, within half an interval (plus jitter). A successful
// trial closes the breaker, after which the path is probed again once it
// has been idle for the interval; a failed one opens it for twice the
// cooldown, with no probe meanwhile.
func TestProbeOpenBreaker(t *testing.T) {
	t.Parallel()
	const (
		iv       = time.Second
		cooldown = 3 * iv
		late     = iv/2 + iv/16 + probeStep // the most a round can lag the cooldown's end
	)
	tests := []struct {
		name  string
		down  bool // the server is stopped: the trial gets port unreachable
		state State
		class Class
		quiet time.Duration // no probe for this long after the trial
	}{
		{"a successful trial closes the breaker", false, Closed, ClassOK, iv},
		{"a failed trial opens it for twice the cooldown", true, Open, ClassNetwork, 2 * cooldown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newProbeRig(t, probeRigConfig{zone: probeZone, interval: iv, cooldown: cooldown, literal: true})
			h := r.health(IPv4)
			for range 5 { // the default failure threshold
				r.observe(IPv4, ClassTimeout)
			}
			if s := h.Snapshot(); s.State != Open {
				t.Fatalf("breaker %s after 5 timeouts, want open", s.State)
			}
			if tt.down {
				r.srv.Stop()
			}
			r.start()
			var trial time.Duration
			for elapsed := probeStep; trial == 0; elapsed += probeStep {
				r.step(probeStep)
				switch n := probesOn(h); {
				case n == 0 && elapsed > cooldown+late:
					t.Fatalf("no trial %s after the breaker opened with a cooldown of %s", elapsed, cooldown)
				case n == 0:
				case elapsed < cooldown:
					t.Fatalf("probed %s after the breaker opened, within its cooldown of %s", elapsed, cooldown)
				case n > 1:
					t.Fatalf("%d probes at the end of the cooldown, want 1", n)
				default:
					trial = elapsed
				}
			}
			s := h.Snapshot()
			if s.State != tt.state || s.Transitions[HalfOpen] != 1 || s.Outcomes[tt.class] != 1 {
				t.Fatalf("after the trial: breaker %s, %d half-open trials, %d outcomes %s; want %s, 1, 1",
					s.State, s.Transitions[HalfOpen], s.Outcomes[tt.class], tt.class, tt.state)
			}
			if tt.state == Open && s.Cooldown != 2*cooldown {
				t.Errorf("cooldown %s after a failed trial, want %s", s.Cooldown, 2*cooldown)
			}
			for elapsed := probeStep; elapsed < tt.quiet; elapsed += probeStep {
				r.step(probeStep)
				if n := probesOn(h); n != 1 {
					t.Fatalf("%d probes %s after the trial, want none for %s after it", n-1, elapsed, tt.quiet)
				}
			}
			want := int64(1) // the trial
			if tt.down {
				want = 0
			}
			if got := r.srv.Count("ipv4", "udp"); got != want {
				t.Errorf("server got %d queries, want %d", got, want)
			}
		})
	}
}

// TestProbeStopsOnClose: Close cancels a probe under way rather than wait
// for its timeout (the canceled probe judges nothing), stops the prober,
// and leaves no goroutine behind; nothing is probed afterwards. It does not run in parallel, so the goroutine
// count is its own.
func TestProbeStopsOnClose(t *testing.T) {
	const iv = time.Second
	// probers counts the goroutines of every upstream's prober and probes.
	probers := func() (n int, stacks string) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "dnsedge/transport.(*Upstream).probe") {
				n++
			}
		}
		return n, string(buf)
	}
	// The answer would take 2s and the probe's timeout is 1s: a Close that
	// waited for either would take about a second.
	r := newProbeRig(t, probeRigConfig{zone: probeZone, interval: iv, literal: true,
		faults: transporttest.Faults{Delay: 2 * time.Second}})
	before := runtime.NumGoroutine()
	r.start()
	r.fc.Advance(firstProbeWithin)
	r.sleep()
	probeWait(t, "the probe at the server", func() bool { return r.srv.Count("ipv4", "udp") == 1 })
	if n, _ := probers(); n < 2 {
		t.Fatalf("%d prober goroutines with a probe under way, want the prober and the probe", n)
	}
	// The path's health, taken before Close lets go of it.
	h := r.u.Paths()[0].Health
	closeStart := time.Now()
	if err := r.u.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(closeStart); d > 500*time.Millisecond {
		t.Errorf("Close took %v: it waited for the probe's answer", d)
	}
	if r.reg.Len() != 0 {
		t.Errorf("the registry still holds %d paths' health after the only upstream closed", r.reg.Len())
	}
	if s := h.Snapshot(); s.Outcomes[ClassCanceled] != 1 || s.Consecutive != 0 {
		t.Errorf("the probe under way at Close ended with outcomes %v, consecutive %d; want one canceled, no failure", s.Outcomes, s.Consecutive)
	}
	// Close has waited for them; they may still be returning from their
	// deferred bookkeeping for a moment.
	probeWait(t, "prober goroutines to end", func() bool { n, _ := probers(); return n == 0 })
	r.fc.Advance(10 * iv)
	if n, sent := probesOn(h), r.srv.Count("ipv4", "udp"); n != 1 || sent != 1 {
		t.Errorf("%d probes, %d queries at the server after Close and 10 intervals, want 1 and 1", n, sent)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			_, stacks := probers()
			t.Fatalf("%d goroutines after Close, %d before Start:\n%s", runtime.NumGoroutine(), before, stacks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProbeOff: a negative interval sends no probes at all.
func TestProbeOff(t *testing.T) {
	t.Parallel()
	r := newProbeRig(t, probeRigConfig{zone: probeZone, interval: -1})
	r.start()
	for range 20 {
		r.step(time.Second) // ten default intervals
	}
	for _, p := range r.u.Paths() {
		if s := p.Health.Snapshot(); s.Events[EventProbe] != 0 || s.Sampled {
			t.Errorf("%s: %d probes, sampled %v; want none", p, s.Events[EventProbe], s.Sampled)
		}
	}
	if n := r.srv.Count("ipv4", "udp") + r.srv.Count("ipv6", "udp"); n != 0 {
		t.Errorf("server got %d queries, want none", n)
	}
}
