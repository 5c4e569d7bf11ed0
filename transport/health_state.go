package transport

import (
	"math"
	"time"
)

// HealthState is what a path's health has learnt, in a form another
// process can take over: every instant is given as the time elapsed
// before the moment it was read (a duration, not a clock reading), so it
// means the same on the clock of the process that restores it. An
// elapsed time below zero means the instant never happened.
type HealthState struct {
	State       State
	SRTT        time.Duration
	RTTVar      time.Duration
	Samples     int // RTT samples the estimate rests on, 0 to 255; 0 when unmeasured
	SampledAgo  time.Duration
	Backoff     int // RTO doublings from consecutive timeouts
	Consecutive int // consecutive failures
	OpenedAgo   time.Duration
	ClosedAgo   time.Duration
	Cooldown    time.Duration
	Loss        float64 // failure rate as of LossAgo, 0 to 1
	LossAgo     time.Duration
	SeenAgo     time.Duration
}

// maxBackoff bounds the RTO doublings a restored state may carry: the RTO
// is clamped to MaxTimeout long before.
const maxBackoff = 32

// Valid reports whether st is a state Restore may take: known breaker
// state, durations and counts within their ranges, loss within [0, 1].
func (st HealthState) Valid() bool {
	switch {
	case st.State > HalfOpen:
		return false
	case st.SRTT < 0 || st.RTTVar < 0 || st.Cooldown < 0:
		return false
	case st.Samples < 0 || st.Samples > math.MaxUint8:
		return false
	case st.Backoff < 0 || st.Backoff > maxBackoff || st.Consecutive < 0:
		return false
	case math.IsNaN(st.Loss) || st.Loss < 0 || st.Loss > 1:
		return false
	}
	return true
}

func ago(now, t time.Time) time.Duration {
	if t.IsZero() {
		return -1
	}
	return max(now.Sub(t), 0)
}

func at(now time.Time, d time.Duration) time.Time {
	if d < 0 {
		return time.Time{}
	}
	return now.Add(-d)
}

// State returns what the health has learnt, as of its clock's now.
func (h *Health) State() HealthState {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.cfg.Now()
	st := HealthState{
		State: h.state, Backoff: int(h.backoff), Consecutive: h.consec,
		OpenedAgo: ago(now, h.openedAt), ClosedAgo: ago(now, h.closedAt),
		Cooldown: h.cooldown, Loss: h.loss, LossAgo: ago(now, h.lossAt), SeenAgo: ago(now, h.seenAt),
		SampledAgo: -1,
	}
	if h.sampled {
		st.SRTT, st.RTTVar, st.Samples = h.srtt, h.rttvar, max(int(h.samples), 1)
		st.SampledAgo = ago(now, h.sampledAt)
	}
	return st
}

// Restore replaces what the health has learnt with st, read elapsed
// before now (the time the state spent between processes): every instant
// in st moves that much further into the past. A half-open breaker comes
// back half-open with no trial under way, so the next query is its
// trial. The cooldown is kept within the health's MaxCooldown. Restore
// panics on a state that is not Valid; callers check first.
func (h *Health) Restore(st HealthState, elapsed time.Duration) {
	if !st.Valid() {
		panic("transport: restore of an invalid health state")
	}
	elapsed = max(elapsed, 0)
	shift := func(d time.Duration) time.Duration {
		if d < 0 {
			return d
		}
		if d > math.MaxInt64-elapsed {
			return math.MaxInt64
		}
		return d + elapsed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.cfg.Now()
	h.sampled = st.Samples > 0
	h.srtt, h.rttvar, h.samples = 0, 0, 0
	h.sampledAt = time.Time{}
	if h.sampled {
		h.srtt, h.rttvar, h.samples = st.SRTT, st.RTTVar, uint8(st.Samples)
		h.sampledAt = at(now, shift(st.SampledAgo))
	}
	if uint(st.Backoff) != h.backoff {
		h.epoch++
	}
	h.backoff = uint(st.Backoff)
	h.consec = st.Consecutive
	h.state = st.State
	h.trialBusy = false
	h.openedAt = at(now, shift(st.OpenedAgo))
	h.closedAt = at(now, shift(st.ClosedAgo))
	h.cooldown = min(max(st.Cooldown, h.cfg.Cooldown), h.cfg.MaxCooldown)
	h.loss = st.Loss
	h.lossAt = at(now, shift(st.LossAgo))
	if h.lossAt.IsZero() {
		h.loss = 0
	}
	h.seenAt = at(now, shift(st.SeenAgo))
}

// States returns the state of every path with health, by path.
func (r *Registry) States() map[PathID]HealthState {
	r.mu.Lock()
	hs := make(map[PathID]*Health, len(r.m))
	for id, e := range r.m {
		hs[id] = e.h
	}
	r.mu.Unlock()
	out := make(map[PathID]HealthState, len(hs))
	for id, h := range hs {
		out[id] = h.State()
	}
	return out
}

// Restore restores the health of id from st (see Health.Restore) when
// some path holds it, and reports whether one did: a path the registry
// does not know is not created.
func (r *Registry) Restore(id PathID, st HealthState, elapsed time.Duration) bool {
	r.mu.Lock()
	e, ok := r.m[id]
	r.mu.Unlock()
	if !ok {
		return false
	}
	e.h.Restore(st, elapsed)
	return true
}
