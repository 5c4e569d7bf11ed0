package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Class is the outcome of one exchange on a path, as health sees it.
type Class uint8

// Outcome classes. Failure classes are kept apart so an operator can tell a
// blackholed path (timeouts) from a refused one (network) or an MTU hole
// (truncated).
const (
	// ClassOK: the upstream answered with a usable reply.
	ClassOK Class = iota
	// ClassRcode: the upstream answered SERVFAIL or REFUSED. The path
	// works; the answer is counted apart and is not a path failure.
	ClassRcode
	// ClassCanceled: the query was abandoned before the path had a chance
	// (the client went away). Not a failure, not a success.
	ClassCanceled
	// ClassTimeout: no reply within the attempt's timeout.
	ClassTimeout
	// ClassNetwork: the network said no (unreachable, refused, reset).
	ClassNetwork
	// ClassTruncated: the UDP answer was truncated and the TCP retry failed.
	ClassTruncated
	// ClassMalformed: the reply did not parse or did not match.
	ClassMalformed
	numClasses
)

var classNames = [...]string{"ok", "rcode", "canceled", "timeout", "network", "truncated", "malformed"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Failure reports whether c counts against the path.
func (c Class) Failure() bool { return c >= ClassTimeout }

// Classes lists every class, for metrics.
func Classes() []Class {
	cs := make([]Class, numClasses)
	for i := range cs {
		cs[i] = Class(i)
	}
	return cs
}

// Classify maps an exchange error to its class. A nil error is ClassOK.
func Classify(err error) Class {
	var ee *ExchangeError
	switch {
	case err == nil:
		return ClassOK
	case errors.As(err, &ee):
		return ee.Class
	case errors.Is(err, ErrTruncated):
		return ClassTruncated
	case errors.Is(err, ErrMalformed):
		return ClassMalformed
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassTimeout
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return ClassNetwork
	}
	return ClassNetwork
}

// State is a circuit breaker state.
type State uint8

// Breaker states.
const (
	Closed State = iota
	Open
	HalfOpen
)

var stateNames = [...]string{"closed", "open", "half-open"}

func (s State) String() string { return stateNames[s] }

// HealthConfig tunes path health. The zero value of a field takes the
// default documented on it.
type HealthConfig struct {
	// FailureThreshold is how many consecutive failures open the breaker.
	// Default 5.
	FailureThreshold int
	// Cooldown is how long a breaker stays open before one trial query is
	// let through; it doubles after every failed trial up to MaxCooldown.
	// Defaults 1s and 30s.
	Cooldown, MaxCooldown time.Duration
	// MinTimeout and MaxTimeout clamp the per-attempt timeout computed from
	// measured RTT. InitialTimeout is used before the first sample.
	// Defaults 100ms, 2s and 1s.
	MinTimeout, MaxTimeout, InitialTimeout time.Duration
	// StaleAfter is how old the last RTT sample may get before it no
	// longer describes the path: the next sample then starts the estimate
	// afresh instead of being averaged in, and the fastest strategy
	// measures the path again. Default 5m.
	StaleAfter time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c HealthConfig) withDefaults() HealthConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = 5
	}
	def(&c.Cooldown, time.Second)
	def(&c.MaxCooldown, 30*time.Second)
	def(&c.MinTimeout, 100*time.Millisecond)
	def(&c.MaxTimeout, 2*time.Second)
	def(&c.InitialTimeout, time.Second)
	def(&c.StaleAfter, 5*time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Health is one path's health: smoothed RTT and its variance (RFC 6298),
// consecutive failures, and a circuit breaker. It is plain data updated
// through Observe; it is safe for concurrent use. A Health is only ever
// changed by outcomes on its own path.
type Health struct {
	cfg HealthConfig

	mu        sync.Mutex
	srtt      time.Duration
	rttvar    time.Duration
	sampled   bool
	sampledAt time.Time // when the last RTT sample came
	backoff   uint      // RTO doublings from consecutive timeouts (RFC 6298 §5.5)
	consec    int
	state     State
	openedAt  time.Time
	cooldown  time.Duration
	trialBusy bool

	outcomes    [numClasses]atomic.Uint64
	transitions [3]atomic.Uint64 // entries into each State
}

// NewHealth returns the health of a fresh path: closed, unmeasured.
func NewHealth(cfg HealthConfig) *Health {
	cfg = cfg.withDefaults()
	return &Health{cfg: cfg, cooldown: cfg.Cooldown}
}

// RTO is the path's per-attempt timeout: SRTT + 4·RTTVAR, doubled for each
// consecutive timeout, clamped to [MinTimeout, MaxTimeout].
func (h *Health) RTO() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rtoLocked()
}

func (h *Health) rtoLocked() time.Duration {
	rto := h.cfg.InitialTimeout
	if h.sampled {
		rto = h.srtt + 4*h.rttvar
	}
	for i := uint(0); i < h.backoff && rto < h.cfg.MaxTimeout; i++ {
		rto *= 2
	}
	return min(max(rto, h.cfg.MinTimeout), h.cfg.MaxTimeout)
}

// Permit is what Acquire grants.
type Permit uint8

// Permits.
const (
	// Denied: the breaker is open (or its one trial is under way).
	Denied Permit = iota
	// Allowed: the breaker is closed.
	Allowed
	// Trial: the breaker was open and its cooldown has passed; this query
	// is the one trial of the half-open state.
	Trial
)

// Acquire asks the breaker whether a query may use the path now. A Trial
// permit must be followed by Observe, which settles the trial.
func (h *Health) Acquire() Permit {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case Closed:
		return Allowed
	case Open:
		if h.cfg.Now().Sub(h.openedAt) < h.cooldown {
			return Denied
		}
		h.setState(HalfOpen)
		h.trialBusy = true
		return Trial
	default: // HalfOpen
		if h.trialBusy {
			return Denied
		}
		h.trialBusy = true
		return Trial
	}
}

// Force lets a query through a denied breaker: the group does this when
// every path is denied, so an open breaker lowers priority but never turns
// into an instant SERVFAIL. It is settled by Observe like a trial.
func (h *Health) Force() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == Open {
		h.setState(HalfOpen)
	}
	h.trialBusy = true
}

// Observe records the outcome of one exchange that took rtt.
func (h *Health) Observe(rtt time.Duration, class Class) {
	h.outcomes[class].Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case class == ClassCanceled:
		// The attempt never got its chance: release a trial, learn nothing.
		h.trialBusy = false
	case !class.Failure():
		h.sample(rtt)
		h.backoff = 0
		h.consec = 0
		h.trialBusy = false
		if h.state != Closed {
			h.cooldown = h.cfg.Cooldown
			h.setState(Closed)
		}
	default:
		if class == ClassTimeout && h.rtoLocked() < h.cfg.MaxTimeout {
			h.backoff++
		}
		h.consec++
		wasTrial := h.state == HalfOpen && h.trialBusy
		h.trialBusy = false
		switch {
		case wasTrial:
			h.cooldown = min(2*h.cooldown, h.cfg.MaxCooldown)
			h.open()
		case h.state == Closed && h.consec >= h.cfg.FailureThreshold:
			h.open()
		}
	}
}

func (h *Health) open() {
	h.openedAt = h.cfg.Now()
	h.setState(Open)
}

func (h *Health) setState(s State) {
	if h.state != s {
		h.state = s
		h.transitions[s].Add(1)
	}
}

// sample folds one RTT measurement in, as RFC 6298 §2 does (alpha 1/8,
// beta 1/4). A stale estimate is replaced, as for a first measurement.
func (h *Health) sample(rtt time.Duration) {
	now := h.cfg.Now()
	stale := now.Sub(h.sampledAt) > h.cfg.StaleAfter
	h.sampledAt = now
	if !h.sampled || stale {
		h.srtt, h.rttvar, h.sampled = rtt, rtt/2, true
		return
	}
	d := h.srtt - rtt
	if d < 0 {
		d = -d
	}
	h.rttvar = (3*h.rttvar + d) / 4
	h.srtt = (7*h.srtt + rtt) / 8
}

// HealthSnapshot is a consistent copy of a path's health.
type HealthSnapshot struct {
	State       State
	SRTT        time.Duration // zero when unmeasured
	RTTVar      time.Duration
	RTO         time.Duration
	Sampled     bool          // measured at all
	Stale       bool          // measured, but not for StaleAfter
	Consecutive int           // consecutive failures
	OpenedAt    time.Time     // when the breaker last opened
	Cooldown    time.Duration // current cooldown
	Outcomes    [numClasses]uint64
	Transitions [3]uint64
}

// Snapshot returns a copy of the health for ordering and metrics.
func (h *Health) Snapshot() HealthSnapshot {
	h.mu.Lock()
	s := HealthSnapshot{
		State: h.state, SRTT: h.srtt, RTTVar: h.rttvar, RTO: h.rtoLocked(),
		Sampled: h.sampled, Stale: h.sampled && h.cfg.Now().Sub(h.sampledAt) > h.cfg.StaleAfter,
		Consecutive: h.consec, OpenedAt: h.openedAt, Cooldown: h.cooldown,
	}
	h.mu.Unlock()
	for i := range s.Outcomes {
		s.Outcomes[i] = h.outcomes[i].Load()
	}
	for i := range s.Transitions {
		s.Transitions[i] = h.transitions[i].Load()
	}
	return s
}
