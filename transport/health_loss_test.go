package transport

import (
	"bytes"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestTimeoutsPerRTO: of attempts sent under one RTO, only the first to
// time out backs the RTO off and counts towards the breaker; the others
// were judged by that timeout already. A path that is merely slower than
// its borrowed estimate therefore does not open its breaker because many
// queries were in flight.
func TestTimeoutsPerRTO(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	h := newTestHealth(c) // threshold 3
	var tickets []Ticket
	for range 10 {
		tk, _ := h.Begin(Estimate{})
		tickets = append(tickets, tk)
	}
	before := h.RTO()
	for _, tk := range tickets {
		h.ObserveAttempt(before, ClassTimeout, tk)
	}
	s := h.Snapshot()
	if s.Consecutive != 1 || s.State != Closed || s.RTO != 2*before {
		t.Fatalf("10 timeouts under one RTO: consecutive %d, state %s, RTO %v; want 1, closed, %v", s.Consecutive, s.State, s.RTO, 2*before)
	}
	if s.Outcomes[ClassTimeout] != 10 {
		t.Fatalf("outcomes counted %d timeouts, want all 10", s.Outcomes[ClassTimeout])
	}
	if s.Loss < 0.5 {
		t.Fatalf("loss %.2f after 10 timeouts: every one counts in the failure rate", s.Loss)
	}
	// Attempts sent under the new RTO count again.
	for range 2 {
		tk, _ := h.Begin(Estimate{})
		h.ObserveAttempt(0, ClassTimeout, tk)
	}
	if s := h.Snapshot(); s.State != Open {
		t.Fatalf("state %s after three timeouts under three RTOs, want open", s.State)
	}
}

// TestLossRate: the failure rate is a weighted mean over exchanges that
// halves every LossHalfLife without exchanges; above DemoteLoss the path
// is demoted.
func TestLossRate(t *testing.T) {
	tests := []struct {
		name        string
		outcomes    string // f = failure, o = ok, r = rcode, c = canceled
		idle        time.Duration
		wantLoss    float64
		wantDemoted bool
	}{
		{"fresh", "", 0, 0, false},
		{"one loss among successes", "oooof", 0, 0.125, false},
		{"two losses in a row", "ff", 0, 1 - 0.875*0.875, true},
		{"rcode and canceled are not failures", "rrcc", 0, 0, false},
		{"a loss then recovery", "ffoooo", 0, (1 - 0.875*0.875) * math.Pow(0.875, 4), false},
		{"halves per half-life", "ff", time.Minute, (1 - 0.875*0.875) / 2, false},
		{"half the exchanges lost", strings.Repeat("fo", 40), 0, 0.47, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Unix(1e9, 0)}
			h := NewHealth(HealthConfig{FailureThreshold: 1000, Now: c.now})
			for _, o := range tt.outcomes {
				h.Observe(time.Millisecond, map[rune]Class{'f': ClassNetwork, 'o': ClassOK, 'r': ClassRcode, 'c': ClassCanceled}[o])
			}
			c.advance(tt.idle)
			s := h.Snapshot()
			if math.Abs(s.Loss-tt.wantLoss) > 0.02 || s.Demoted != tt.wantDemoted || h.Rank().Demoted != tt.wantDemoted {
				t.Fatalf("loss %.3f demoted %v, want %.3f %v", s.Loss, s.Demoted, tt.wantLoss, tt.wantDemoted)
			}
		})
	}
}

// TestBreakerDoesNotFlapOnHalfLoss: a path losing about half its
// exchanges, as the group uses it (client traffic while it is neither
// open nor demoted, a probe every 2s otherwise), opens its breaker a few
// times at most over a minute, not every few seconds.
func TestBreakerDoesNotFlapOnHalfLoss(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	h := NewHealth(HealthConfig{Now: c.now}) // defaults: threshold 5, cooldown 1s..30s
	rng := rand.New(rand.NewPCG(7, 7))
	lastProbe := c.t
	for step := 0; step < 6000; step++ { // 60s at 100 queries per second
		c.advance(10 * time.Millisecond)
		r := h.Rank()
		client := r.State == Closed && !r.Demoted
		probe := !client && c.t.Sub(lastProbe) >= 2*time.Second
		if !client && !probe {
			continue
		}
		if probe {
			lastProbe = c.t
		}
		if h.Acquire() == Denied {
			continue
		}
		class := ClassOK
		if rng.IntN(100) < 51 {
			class = ClassTimeout
		}
		h.Observe(time.Millisecond, class)
	}
	if opens := h.Snapshot().Transitions[Open]; opens > 3 {
		t.Fatalf("breaker opened %d times in 60s on a half-lossy path, want at most 3", opens)
	}
}

// TestCooldownHysteresis: a breaker that opens again soon after closing
// waits twice as long; one that stayed closed for MaxCooldown starts from
// Cooldown again.
func TestCooldownHysteresis(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	h := newTestHealth(c) // threshold 3, cooldown 1s, max 4s
	open := func() {
		for range 3 {
			h.Observe(0, ClassNetwork)
		}
	}
	closeAfterCooldown := func() {
		c.advance(h.Snapshot().Cooldown)
		if h.Acquire() != Trial {
			t.Fatal("no trial after the cooldown")
		}
		h.Observe(time.Millisecond, ClassOK)
	}
	open()
	if cd := h.Snapshot().Cooldown; cd != time.Second {
		t.Fatalf("first cooldown %v, want 1s", cd)
	}
	closeAfterCooldown()
	open()
	if cd := h.Snapshot().Cooldown; cd != 2*time.Second {
		t.Fatalf("cooldown after reopening at once %v, want 2s", cd)
	}
	closeAfterCooldown()
	c.advance(4 * time.Second) // closed for MaxCooldown
	open()
	if cd := h.Snapshot().Cooldown; cd != time.Second {
		t.Fatalf("cooldown after a long healthy spell %v, want 1s", cd)
	}
}

// TestTransitionsLogged: every breaker transition is logged at info with
// the path, through the registry's logger.
func TestTransitionsLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := &fakeClock{t: time.Unix(1e9, 0)}
	r := NewRegistry(HealthConfig{FailureThreshold: 1, Now: c.now}, log)
	h := r.Health(PathID{Upstream: "up", Proto: "udp"})
	h.Observe(0, ClassNetwork)
	c.advance(time.Second)
	h.Acquire()
	h.Observe(time.Millisecond, ClassOK)
	out := buf.String()
	for _, want := range []string{"to=open", "to=half-open", "to=closed", `path="up/udp/invalid AddrPort"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "level=INFO"); n != 3 {
		t.Errorf("%d info lines, want 3:\n%s", n, out)
	}
}

func TestRegistryHoldsHealthWhilePathsDo(t *testing.T) {
	r := NewRegistry(HealthConfig{}, nil)
	id := PathID{Upstream: "up", Proto: "udp"}
	a := r.Health(id)
	b := r.Health(id)
	if a != b || r.Len() != 1 {
		t.Fatalf("two holders of one path got %p and %p (%d entries)", a, b, r.Len())
	}
	r.Release(id)
	if r.Len() != 1 {
		t.Fatal("health forgotten while a path still holds it")
	}
	r.Release(id)
	if r.Len() != 0 {
		t.Fatal("health kept after its last path let go")
	}
	if c := r.Health(id); c == a {
		t.Fatal("a path that came back got the health it had before it was forgotten")
	}
}

func TestRegistrySetConfigReachesLivePaths(t *testing.T) {
	r := NewRegistry(HealthConfig{FailureThreshold: 5}, nil)
	id := PathID{Upstream: "up", Proto: "udp"}
	h := r.Health(id)
	for range 2 {
		h.Observe(time.Millisecond, ClassTimeout)
	}
	if s := h.Snapshot().State; s != Closed {
		t.Fatalf("breaker %s after 2 of 5 failures", s)
	}
	r.SetConfig(HealthConfig{FailureThreshold: 3})
	h.Observe(time.Millisecond, ClassTimeout)
	if s := h.Snapshot(); s.State != Open || s.Consecutive != 3 {
		t.Fatalf("after the threshold dropped to 3 and a third failure: breaker %s, %d failures; want open, 3", s.State, s.Consecutive)
	}
}
