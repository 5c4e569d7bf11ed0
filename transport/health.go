package transport

import (
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

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
	// afresh instead of being averaged in. Default 5m.
	StaleAfter time.Duration
	// DemoteLoss is the failure rate above which a path is tried after
	// the paths below it, while its breaker is still closed. The rate is
	// an exponentially weighted mean over exchanges (weight 1/8 each)
	// that also halves every LossHalfLife without exchanges. Defaults
	// 0.2 and 1m.
	DemoteLoss   float64
	LossHalfLife time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives breaker transitions at info; nil discards them.
	Logger *slog.Logger
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
	def(&c.LossHalfLife, time.Minute)
	if c.DemoteLoss <= 0 {
		c.DemoteLoss = 0.2
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// lossWeight is the weight of one exchange in the failure rate; a rate
// below lossFloor is taken as none.
const (
	lossWeight = 1.0 / 8
	lossFloor  = 1e-3
)

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
	samples   uint8     // RTT samples so far, saturating
	sampledAt time.Time // when the last RTT sample came
	backoff   uint      // RTO doublings from consecutive timeouts (RFC 6298 §5.5)
	epoch     uint64    // changes whenever backoff does; see Begin
	consec    int
	state     State
	openedAt  time.Time
	closedAt  time.Time // when the breaker last closed after being open
	cooldown  time.Duration
	trialBusy bool
	loss      float64   // failure rate as of lossAt
	lossAt    time.Time // when loss was last updated
	seenAt    time.Time // when the last exchange on the path ended

	outcomes    [numClasses]atomic.Uint64
	transitions [3]atomic.Uint64 // entries into each State
	events      [numEvents]atomic.Uint64
	// exchanges observes each attempt's duration; set once by the
	// registry before the health is shared, nil for none.
	exchanges Observer
	lastErr   atomic.Pointer[PathError]
}

// PathError is the last failed exchange of a path, for status pages.
type PathError struct {
	Class Class
	Err   string
	At    time.Time
}

// LastError returns the path's last failed exchange attempt (any class
// but ok and canceled), nil when none failed yet. Safe for concurrent
// use.
func (h *Health) LastError() *PathError { return h.lastErr.Load() }

// noteError keeps err, or the RCODE of reply for ClassRcode, as the
// path's last error, unless class says the attempt succeeded or was
// canceled by its caller.
func (h *Health) noteError(class Class, err error, reply *dns.Msg, at time.Time) {
	if class == ClassOK || class == ClassCanceled {
		return
	}
	msg := class.String()
	switch {
	case err != nil:
		msg = err.Error()
	case reply != nil:
		msg = "answered " + dns.RcodeToString[reply.Rcode]
	}
	h.lastErr.Store(&PathError{Class: class, Err: msg, At: at})
}

// observeExchange reports one attempt's duration to the path's exchange
// observer, if it has one.
func (h *Health) observeExchange(rtt time.Duration) {
	if h.exchanges != nil {
		h.exchanges.Observe(rtt.Seconds())
	}
}

// Event is something that happened on a path other than an exchange's
// outcome, counted for metrics.
type Event uint8

// Events.
const (
	// EventHedge: an attempt on the path was started because the
	// attempt before it was slow (the hedge delay passed).
	EventHedge Event = iota
	// EventHedgeWon: such an attempt gave the answer the client got.
	EventHedgeWon
	// EventProbe: a background probe was sent on the path.
	EventProbe
	numEvents
)

// Count records one ev on the path.
func (h *Health) Count(ev Event) { h.events[ev].Add(1) }

// Estimate is an RTT estimate: smoothed RTT and its variance (RFC 6298).
// The zero value means no estimate.
type Estimate struct {
	SRTT, RTTVar time.Duration
	// Samples is how many measurements the estimate rests on, up to
	// 255; a measured 0 is still known.
	Samples int
}

// Known reports whether e holds a measurement.
func (e Estimate) Known() bool { return e.Samples > 0 || e.SRTT > 0 || e.RTTVar > 0 }

// settled is how many samples an estimate needs before the hedge delay
// trusts it alone: a first sample sets RTTVAR to half the RTT (RFC 6298
// §2.2), so one slow probe would otherwise make a path's hedge delay four
// times that RTT.
const settled = 3

// Ticket identifies the RTO an attempt was started under; see Begin.
type Ticket struct{ epoch uint64 }

// NewHealth returns the health of a fresh path: closed, unmeasured.
func NewHealth(cfg HealthConfig) *Health {
	cfg = cfg.withDefaults()
	return &Health{cfg: cfg, cooldown: cfg.Cooldown}
}

// setConfig replaces the health's configuration, keeping its clock when
// cfg names none and what it measured.
func (h *Health) setConfig(cfg HealthConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cfg.Now == nil {
		cfg.Now = h.cfg.Now
	}
	h.cfg = cfg.withDefaults()
	h.cooldown = min(h.cooldown, h.cfg.MaxCooldown)
}

// RTO is the path's per-attempt timeout: SRTT + 4·RTTVAR, doubled for each
// consecutive timeout, clamped to [MinTimeout, MaxTimeout]. Before the
// first sample it is InitialTimeout.
func (h *Health) RTO() time.Duration { return h.Timeout(Estimate{}) }

// Timeout is RTO, except that a path without a sample of its own takes
// its base from prior (a sibling path's estimate) when prior is known.
func (h *Health) Timeout(prior Estimate) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.timeoutLocked(prior)
}

// Estimate returns the path's own RTT estimate; the zero Estimate when it
// has never been measured. A stale estimate is still returned: it is the
// best there is until the next sample.
func (h *Health) Estimate() Estimate {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.sampled {
		return Estimate{}
	}
	return Estimate{SRTT: h.srtt, RTTVar: h.rttvar, Samples: int(h.samples)}
}

// Begin is called when an attempt starts: it returns the attempt's
// timeout (Timeout(prior)) and, read at the same moment, the ticket that
// goes back to ObserveAttempt. A timeout is counted against the path
// (backing its RTO off and adding to its consecutive failures) only for
// an attempt started under the current RTO: attempts sent before an
// earlier timeout had doubled it were given a timeout the path has already
// been judged by, as TCP backs off once per retransmission timer, not once
// per segment. Such timeouts still count in the failure rate.
func (h *Health) Begin(prior Estimate) (Ticket, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Ticket{h.epoch}, h.timeoutLocked(prior)
}

func (h *Health) rtoLocked() time.Duration { return h.timeoutLocked(Estimate{}) }

func (h *Health) timeoutLocked(prior Estimate) time.Duration {
	rto := h.cfg.InitialTimeout
	switch {
	case h.sampled:
		rto = h.srtt + 4*h.rttvar
	case prior.Known():
		rto = prior.SRTT + 4*prior.RTTVar
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

// Observe records the outcome of one exchange that took rtt, as an
// attempt started under the current RTO.
func (h *Health) Observe(rtt time.Duration, class Class) {
	h.mu.Lock()
	t := Ticket{h.epoch}
	h.mu.Unlock()
	h.ObserveAttempt(rtt, class, t)
}

// ObserveAttempt records the outcome of the attempt that Begin gave t.
func (h *Health) ObserveAttempt(rtt time.Duration, class Class, t Ticket) {
	h.outcomes[class].Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.cfg.Now()
	if class != ClassCanceled {
		h.seenAt = now
		h.addLoss(now, class.Failure())
	}
	switch {
	case class == ClassCanceled:
		// The attempt never got its chance: release a trial, learn nothing.
		h.trialBusy = false
	case !class.Failure():
		h.sample(rtt, now)
		if h.backoff != 0 {
			h.backoff = 0
			h.epoch++
		}
		h.consec = 0
		h.trialBusy = false
		if h.state != Closed {
			h.closedAt = now
			h.setState(Closed)
		}
	default:
		wasTrial := h.state == HalfOpen && h.trialBusy
		if class == ClassTimeout && t.epoch != h.epoch && !wasTrial {
			// Started before an earlier timeout backed the RTO off: that
			// timeout already judged the path by this attempt's timeout.
			return
		}
		if class == ClassTimeout && h.rtoLocked() < h.cfg.MaxTimeout {
			h.backoff++
			h.epoch++
		}
		h.consec++
		h.trialBusy = false
		switch {
		case wasTrial:
			h.cooldown = min(2*h.cooldown, h.cfg.MaxCooldown)
			h.open(now)
		case h.state == Closed && h.consec >= h.cfg.FailureThreshold:
			// A path that opens again soon after it closed waits longer
			// than the last time; one that stayed closed for MaxCooldown
			// starts from Cooldown again. A path that keeps losing about
			// half its exchanges therefore does not flap.
			if h.closedAt.IsZero() || now.Sub(h.closedAt) >= h.cfg.MaxCooldown {
				h.cooldown = h.cfg.Cooldown
			} else {
				h.cooldown = min(2*h.cooldown, h.cfg.MaxCooldown)
			}
			h.open(now)
		}
	}
}

// addLoss folds one exchange into the failure rate, after letting the
// rate decay for the time since the last one.
func (h *Health) addLoss(now time.Time, failed bool) {
	l := h.lossLocked(now)
	x := 0.0
	if failed {
		x = 1
	}
	h.loss = l + lossWeight*(x-l)
	if h.loss < lossFloor {
		h.loss = 0 // spares healthy paths the clock read in Rank
	}
	h.lossAt = now
}

func (h *Health) lossLocked(now time.Time) float64 {
	if h.loss == 0 || h.lossAt.IsZero() {
		return h.loss
	}
	idle := now.Sub(h.lossAt)
	if idle <= 0 {
		return h.loss
	}
	return h.loss * math.Exp2(-float64(idle)/float64(h.cfg.LossHalfLife))
}

// Loss returns the path's failure rate, from 0 to 1.
func (h *Health) Loss() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lossLocked(h.cfg.Now())
}

// Rank is what ordering needs to know of a path, read in one lock.
type Rank struct {
	State    State
	Estimate Estimate
	Demoted  bool // failure rate above DemoteLoss
}

// Rank returns the path's state, estimate and whether it is demoted.
func (h *Health) Rank() Rank {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := Rank{State: h.state}
	if h.loss > h.cfg.DemoteLoss { // it only decays from there
		r.Demoted = h.lossLocked(h.cfg.Now()) > h.cfg.DemoteLoss
	}
	if h.sampled {
		r.Estimate = Estimate{SRTT: h.srtt, RTTVar: h.rttvar, Samples: int(h.samples)}
	}
	return r
}

// IdleFor reports how long ago the last exchange on the path ended; a
// path never used counts as idle since forever.
func (h *Health) IdleFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seenAt.IsZero() {
		return math.MaxInt64
	}
	return h.cfg.Now().Sub(h.seenAt)
}

func (h *Health) open(now time.Time) {
	h.openedAt = now
	h.setState(Open)
}

func (h *Health) setState(s State) {
	if h.state != s {
		from := h.state
		h.state = s
		h.transitions[s].Add(1)
		h.cfg.Logger.Info("path breaker", "from", from.String(), "to", s.String(),
			"consecutive_failures", h.consec, "cooldown", h.cooldown.String())
	}
}

// sample folds one RTT measurement in, as RFC 6298 §2 does (alpha 1/8,
// beta 1/4). A stale estimate is replaced, as for a first measurement.
func (h *Health) sample(rtt time.Duration, now time.Time) {
	stale := now.Sub(h.sampledAt) > h.cfg.StaleAfter
	h.sampledAt = now
	if !h.sampled || stale {
		h.srtt, h.rttvar, h.sampled, h.samples = rtt, rtt/2, true, 1
		return
	}
	h.samples = max(h.samples, h.samples+1) // saturating
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
	Loss        float64       // failure rate, 0 to 1
	Demoted     bool          // Loss above DemoteLoss
	Outcomes    [numClasses]uint64
	Transitions [3]uint64
	Events      [numEvents]uint64
}

// Snapshot returns a copy of the health for ordering and metrics.
func (h *Health) Snapshot() HealthSnapshot {
	h.mu.Lock()
	s := HealthSnapshot{
		State: h.state, SRTT: h.srtt, RTTVar: h.rttvar, RTO: h.rtoLocked(),
		Sampled: h.sampled, Stale: h.sampled && h.cfg.Now().Sub(h.sampledAt) > h.cfg.StaleAfter,
		Consecutive: h.consec, OpenedAt: h.openedAt, Cooldown: h.cooldown,
	}
	s.Loss = h.lossLocked(h.cfg.Now())
	s.Demoted = s.Loss > h.cfg.DemoteLoss
	h.mu.Unlock()
	for i := range s.Outcomes {
		s.Outcomes[i] = h.outcomes[i].Load()
	}
	for i := range s.Transitions {
		s.Transitions[i] = h.transitions[i].Load()
	}
	for i := range s.Events {
		s.Events[i] = h.events[i].Load()
	}
	return s
}
