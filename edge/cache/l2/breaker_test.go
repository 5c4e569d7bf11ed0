package l2

import (
	"sync"
	"testing"
	"time"
)

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// TestBreaker walks the breaker through its states on a fake clock.
func TestBreaker(t *testing.T) {
	t.Parallel()
	type step struct {
		do        string // fail, ok, allow, probe-ok, probe-fail, wait <duration>
		wait      time.Duration
		wantState int32
		wantAllow bool // for allow
		wantProbe bool // for allow
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after 3 consecutive failures", []step{
			{do: "fail", wantState: stateClosed},
			{do: "fail", wantState: stateClosed},
			{do: "allow", wantState: stateClosed, wantAllow: true},
			{do: "fail", wantState: stateOpen},
			{do: "allow", wantState: stateOpen},
		}},
		{"a success resets the count", []step{
			{do: "fail"}, {do: "fail"}, {do: "ok"}, {do: "fail"}, {do: "fail", wantState: stateClosed},
		}},
		{"half-open after the cooldown, one probe, closes on success", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: stateOpen},
			{do: "wait", wait: 999 * time.Millisecond, wantState: stateOpen},
			{do: "allow", wantState: stateOpen},
			{do: "wait", wait: time.Millisecond, wantState: stateOpen},
			{do: "allow", wantState: stateHalfOpen, wantProbe: true},
			{do: "allow", wantState: stateHalfOpen},
			{do: "ok", wantState: stateHalfOpen}, // only the probe closes it
			{do: "probe-ok", wantState: stateClosed},
			{do: "allow", wantState: stateClosed, wantAllow: true},
		}},
		{"a failed probe doubles the cooldown up to the cap", []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: stateOpen},
			{do: "wait", wait: time.Second},
			{do: "allow", wantState: stateHalfOpen, wantProbe: true},
			{do: "probe-fail", wantState: stateOpen},
			{do: "wait", wait: 1999 * time.Millisecond},
			{do: "allow", wantState: stateOpen},
			{do: "wait", wait: time.Millisecond},
			{do: "allow", wantState: stateHalfOpen, wantProbe: true},
			{do: "probe-fail", wantState: stateOpen},
			{do: "wait", wait: 3 * time.Second}, // capped at 3s, not 4s
			{do: "allow", wantState: stateHalfOpen, wantProbe: true},
			{do: "probe-ok", wantState: stateClosed},
			{do: "fail"}, {do: "fail"}, {do: "fail", wantState: stateOpen},
			{do: "wait", wait: time.Second}, // reset to the first cooldown
			{do: "allow", wantState: stateHalfOpen, wantProbe: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := &fakeNow{t: time.Unix(1000, 0)}
			b := newBreaker(3, time.Second, 3*time.Second, clk.now)
			for i, s := range tt.steps {
				switch s.do {
				case "fail":
					b.failure()
				case "ok":
					b.success()
				case "probe-ok":
					b.probed(true)
				case "probe-fail":
					b.probed(false)
				case "wait":
					clk.advance(s.wait)
				case "allow":
					ok, probe := b.allow()
					if ok != s.wantAllow || probe != s.wantProbe {
						t.Fatalf("step %d: allow = %v, %v, want %v, %v", i, ok, probe, s.wantAllow, s.wantProbe)
					}
				}
				if s.wantState != 0 || s.do == "allow" || s.do == "probe-ok" {
					if got := b.state.Load(); got != s.wantState {
						t.Fatalf("step %d (%s): state %d, want %d", i, s.do, got, s.wantState)
					}
				}
			}
		})
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"no samples: the configured budget", nil, 2 * time.Millisecond},
		{"too few samples", repeat(100*time.Microsecond, budgetEvery-1), 2 * time.Millisecond},
		{"fast Redis: 3 × p99", repeat(200*time.Microsecond, budgetEvery), 600 * time.Microsecond},
		{"very fast Redis: the floor", repeat(10*time.Microsecond, budgetEvery), 250 * time.Microsecond},
		{"slow Redis: the configured budget", repeat(5*time.Millisecond, budgetEvery), 2 * time.Millisecond},
		{"the p99, not the median", append(repeat(100*time.Microsecond, budgetWindow-2), repeat(time.Millisecond, 2+budgetWindow%budgetEvery)...), 300 * time.Microsecond},
		{"a slow tail raises it", append(repeat(100*time.Microsecond, budgetWindow-4), repeat(500*time.Microsecond, 4)...), 1500 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBudget(2*time.Millisecond, 250*time.Microsecond)
			for _, d := range tt.samples {
				b.observe(d)
			}
			if got := b.current(); got != tt.want {
				t.Errorf("budget %s, want %s", got, tt.want)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}
