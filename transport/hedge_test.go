package transport

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// ctlPath is a path whose exchanges the test answers by hand: each call
// signals started, then waits for an outcome on release or for its ctx.
type ctlPath struct {
	*Path
	started chan struct{}
	release chan error // nil answers NOERROR
}

func newCtlPath(t *testing.T, fc *clockwork.FakeClock, name string, fam Family, timeout time.Duration) *ctlPath {
	c := &ctlPath{started: make(chan struct{}, 8), release: make(chan error, 8)}
	addr := netip.MustParseAddrPort("127.0.0.1:53")
	if fam == IPv6 {
		addr = netip.MustParseAddrPort("[::1]:53")
	}
	c.Path = &Path{
		ID: PathID{Upstream: name, Proto: "udp", Addr: addr}, Family: fam,
		Health: NewHealth(HealthConfig{FailureThreshold: 5, MinTimeout: timeout, MaxTimeout: 10 * time.Second, InitialTimeout: timeout, Now: fc.Now}),
		Exchanger: &fakeExchanger{t: t, exchange: func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
			c.started <- struct{}{}
			select {
			case err := <-c.release:
				if err != nil {
					return nil, err
				}
				m := new(dns.Msg)
				m.SetReply(q)
				return m, nil
			case <-ctx.Done():
				return nil, &ExchangeError{Class: ClassTimeout, Err: ctx.Err()}
			}
		}},
	}
	return c
}

func (c *ctlPath) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-c.started:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s never started", c.ID.Upstream)
	}
}

// notStarted checks that c has not been started. The race reacts within
// microseconds; a quiet real wait of 50ms is a wide margin.
func (c *ctlPath) notStarted(t *testing.T) {
	t.Helper()
	select {
	case <-c.started:
		t.Fatalf("%s was started", c.ID.Upstream)
	case <-time.After(50 * time.Millisecond):
	}
}

var errRefused = &ExchangeError{Class: ClassNetwork, Err: syscall.ECONNREFUSED}

// TestHedgeTrigger: the next attempt starts when the hedge delay of the
// attempt started last passes or when that attempt fails, exactly one per
// trigger; a failure that comes as the timer fires starts one attempt, not
// two; a failure of an older attempt, or of a trial, starts nothing.
func TestHedgeTrigger(t *testing.T) {
	// Unmeasured paths with no prior wait MaxAttemptDelay (60ms) before
	// the next. The first path's own timeout is set per case.
	const hedge = 60 * time.Millisecond
	tests := []struct {
		name     string
		aTimeout time.Duration
		trialA   bool
		// act drives the race after a has started; it returns the path
		// expected to start next (nil: none).
		act       func(t *testing.T, fc *clockwork.FakeClock, a, b *ctlPath) *ctlPath
		wantHedge uint64 // hedges counted on b
	}{
		{name: "the timer fires: one hedge", aTimeout: time.Second,
			act: func(t *testing.T, fc *clockwork.FakeClock, a, b *ctlPath) *ctlPath {
				fc.Advance(hedge)
				return b
			}, wantHedge: 1},
		{name: "a failure before the timer starts the next at once", aTimeout: time.Second,
			act: func(t *testing.T, fc *clockwork.FakeClock, a, b *ctlPath) *ctlPath {
				a.release <- errRefused
				return b
			}},
		{name: "a timeout and the timer at the same instant start one attempt", aTimeout: hedge,
			act: func(t *testing.T, fc *clockwork.FakeClock, a, b *ctlPath) *ctlPath {
				fc.Advance(hedge)
				return b
			}, wantHedge: 99}, // either trigger may be seen first
		{name: "a failure of an older attempt while a newer runs starts nothing", aTimeout: time.Second,
			act: func(t *testing.T, fc *clockwork.FakeClock, a, b *ctlPath) *ctlPath {
				fc.Advance(hedge)
				b.waitStarted(t)
				a.release <- errRefused
				return nil
			}, wantHedge: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clockwork.NewFakeClock()
			a := newCtlPath(t, fc, "a", IPv6, tt.aTimeout)
			b := newCtlPath(t, fc, "b", IPv4, time.Second)
			c := newCtlPath(t, fc, "c", IPv6, time.Second)
			rc := RaceConfig{MaxAttemptDelay: hedge, Clock: fc}.withDefaults()
			type out struct {
				res Result
				err error
			}
			done := make(chan out, 1)
			go func() {
				res, err := race(context.Background(), query(), nil, cands(a.Path, b.Path, c.Path), false, rc)
				done <- out{res, err}
			}()
			a.waitStarted(t)
			// a's attempt timeout and the hedge timer are both armed.
			if err := fc.BlockUntilContext(t.Context(), 2); err != nil {
				t.Fatal(err)
			}
			next := tt.act(t, fc, a, b)
			if next != nil {
				next.waitStarted(t)
			}
			b.notStarted(t) // never twice
			c.notStarted(t)
			winner := b
			if next == nil {
				winner = b // already running since act
			}
			winner.release <- nil
			o := <-done
			if o.err != nil || o.res.Path != winner.Path {
				t.Fatalf("race = %v, %v; want an answer from %s", o.res.Path, o.err, winner.ID.Upstream)
			}
			if o.res.Attempts != 2 {
				t.Errorf("%d attempts, want 2", o.res.Attempts)
			}
			ev := b.Health.Snapshot().Events
			if tt.wantHedge != 99 && ev[EventHedge] != tt.wantHedge {
				t.Errorf("hedges on b = %d, want %d", ev[EventHedge], tt.wantHedge)
			}
			if ev[EventHedgeWon] != ev[EventHedge] {
				t.Errorf("hedges won on b = %d, want %d", ev[EventHedgeWon], ev[EventHedge])
			}
		})
	}
}

// TestHedgeTrialFailureStartsNothing: a half-open path's trial runs beside
// the first path; its failure is no reason to start another.
func TestHedgeTrialFailureStartsNothing(t *testing.T) {
	fc := clockwork.NewFakeClock()
	trial := newCtlPath(t, fc, "trial", IPv6, time.Second)
	b := newCtlPath(t, fc, "b", IPv4, time.Second)
	c := newCtlPath(t, fc, "c", IPv6, time.Second)
	for range 5 { // open, then wait out the cooldown: the next query is the trial
		trial.Health.Observe(0, ClassNetwork)
	}
	fc.Advance(time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := race(context.Background(), query(), nil, cands(trial.Path, b.Path, c.Path), false, RaceConfig{MaxAttemptDelay: time.Second, Clock: fc}.withDefaults())
		done <- err
	}()
	trial.waitStarted(t)
	b.waitStarted(t)
	trial.release <- errRefused
	c.notStarted(t)
	b.release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHedgeDelay: the wait for a path is HedgeFactor·SRTT + 4·RTTVAR of
// its estimate (its prior when it has none), clamped to the attempt delay
// bounds; nothing measured waits the cap.
func TestHedgeDelay(t *testing.T) {
	rc := RaceConfig{}.withDefaults()
	tests := []struct {
		name string
		e    Estimate
		want time.Duration
	}{
		{"loopback: the 10ms floor", Estimate{SRTT: 200 * time.Microsecond, RTTVar: 50 * time.Microsecond}, 10 * time.Millisecond},
		{"20ms path", Estimate{SRTT: 20 * time.Millisecond, RTTVar: 2 * time.Millisecond}, 48 * time.Millisecond},
		{"slow path: the 250ms cap", Estimate{SRTT: 150 * time.Millisecond, RTTVar: 10 * time.Millisecond}, 250 * time.Millisecond},
		{"unmeasured, no prior: the cold delay", Estimate{}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := hedgeDelay(tt.e, rc); got != tt.want {
			t.Errorf("%s: hedgeDelay = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestHedgeEstimate: a path hedges by its own estimate once it rests on a
// few samples; before that, by its prior when the prior waits less, so one
// slow first probe (RTTVAR = RTT/2 makes the delay 4·RTT) does not hold
// every client back.
func TestHedgeEstimate(t *testing.T) {
	rc := RaceConfig{}.withDefaults()
	fast := Estimate{SRTT: 200 * time.Microsecond, RTTVar: 50 * time.Microsecond, Samples: 10}
	tests := []struct {
		name    string
		samples []time.Duration
		prior   Estimate
		want    time.Duration
	}{
		{"one slow sample, a fast prior: the prior", []time.Duration{16 * time.Millisecond}, fast, 10 * time.Millisecond},
		{"one slow sample, no prior: its own", []time.Duration{16 * time.Millisecond}, Estimate{}, 64 * time.Millisecond},
		{"settled: its own", []time.Duration{16 * time.Millisecond, 16 * time.Millisecond, 16 * time.Millisecond}, fast, 32*time.Millisecond + 4*(8*time.Millisecond*9/16)},
		{"one fast sample, a slow prior: its own", []time.Duration{time.Millisecond}, Estimate{SRTT: 50 * time.Millisecond, Samples: 5}, 10 * time.Millisecond},
		{"unmeasured: the prior", nil, fast, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealth(HealthConfig{})
			for _, s := range tt.samples {
				h.Observe(s, ClassOK)
			}
			c := candidate{p: &Path{Health: h}, prior: tt.prior}
			if got := hedgeDelay(c.hedgeEstimate(rc), rc); got != tt.want {
				t.Fatalf("hedge delay = %v, want %v", got, tt.want)
			}
		})
	}
}
