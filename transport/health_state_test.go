package transport

import (
	"math"
	"testing"
	"time"
)

// TestHealthStateRestore: a health restored from another's state on
// another clock has the same estimate, breaker and timers, each moved by
// the time the state spent between them.
func TestHealthStateRestore(t *testing.T) {
	oldClk := &fakeClock{t: time.Unix(1000, 0)}
	src := newTestHealth(oldClk)
	src.Observe(20*time.Millisecond, ClassOK)
	src.Observe(30*time.Millisecond, ClassOK)
	for range 5 {
		src.Observe(0, ClassTimeout)
	}
	if src.Snapshot().State != Open {
		t.Fatal("source breaker not open")
	}
	oldClk.advance(300 * time.Millisecond)
	st := src.State()
	if !st.Valid() || st.OpenedAgo != 300*time.Millisecond || st.Samples != 2 {
		t.Fatalf("state %+v", st)
	}

	newClk := &fakeClock{t: time.Unix(5_000_000, 0)}
	dst := newTestHealth(newClk)
	dst.Restore(st, 100*time.Millisecond)
	a, b := src.Snapshot(), dst.Snapshot()
	if b.State != Open || b.SRTT != a.SRTT || b.RTTVar != a.RTTVar || b.Consecutive != 5 || b.Cooldown != a.Cooldown || b.RTO != a.RTO {
		t.Fatalf("restored %+v\nsource %+v", b, a)
	}
	if got := newClk.now().Sub(b.OpenedAt); got != 400*time.Millisecond {
		t.Fatalf("opened %s ago, want 400ms", got)
	}
	if math.Abs(b.Loss-src.Loss()) > 0.05 {
		t.Fatalf("loss %f, source %f", b.Loss, src.Loss())
	}
	// The cooldown (1s) runs on from where it was: 600ms to go.
	newClk.advance(500 * time.Millisecond)
	if p := dst.Acquire(); p != Denied {
		t.Fatalf("before the cooldown ends: %v", p)
	}
	newClk.advance(100 * time.Millisecond)
	if p := dst.Acquire(); p != Trial {
		t.Fatalf("once the cooldown ended: %v, want a trial", p)
	}
}

// TestHealthStateHalfOpen: a half-open breaker whose trial was under way
// comes back half-open with the trial free.
func TestHealthStateHalfOpen(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	src := newTestHealth(clk)
	for range 5 {
		src.Observe(0, ClassNetwork)
	}
	clk.advance(2 * time.Second)
	if src.Acquire() != Trial {
		t.Fatal("no trial")
	}
	dst := newTestHealth(clk)
	dst.Restore(src.State(), 0)
	if p := dst.Acquire(); p != Trial {
		t.Fatalf("restored half-open breaker: %v, want a trial", p)
	}
}

func TestHealthStateValid(t *testing.T) {
	tests := []struct {
		name string
		st   HealthState
	}{
		{"state", HealthState{State: 3}},
		{"negative srtt", HealthState{SRTT: -1}},
		{"samples", HealthState{Samples: 256}},
		{"backoff", HealthState{Backoff: maxBackoff + 1}},
		{"loss", HealthState{Loss: 1.5}},
		{"nan", HealthState{Loss: math.NaN()}},
		{"consecutive", HealthState{Consecutive: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.st.Valid() {
				t.Fatal("valid")
			}
		})
	}
	if !(HealthState{}).Valid() {
		t.Fatal("zero state invalid")
	}
}

// TestRegistryRestore: only paths the registry holds are restored.
func TestRegistryRestore(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := NewRegistry(HealthConfig{Now: clk.now}, nil)
	id := PathID{Upstream: "a", Proto: "udp"}
	h := r.Health(id)
	h.Observe(10*time.Millisecond, ClassOK)
	states := r.States()
	r2 := NewRegistry(HealthConfig{Now: clk.now}, nil)
	if r2.Restore(id, states[id], 0) {
		t.Fatal("restored a path nobody holds")
	}
	if r2.Len() != 0 {
		t.Fatal("restore created a path")
	}
	h2 := r2.Health(id)
	if !r2.Restore(id, states[id], 0) || h2.Estimate().SRTT != 10*time.Millisecond {
		t.Fatalf("estimate %+v", h2.Estimate())
	}
}
