package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/miekg/dns"
)

// RaceConfig tunes the race engine and the order it races paths in.
type RaceConfig struct {
	// The hedge delay is how long the engine waits for the path it
	// started last before starting the next one (RFC 8305 §5 "Connection
	// Attempt Delay"): HedgeFactor·SRTT + 4·RTTVAR of that path (or of
	// its prior when it has no sample of its own), clamped to
	// [MinAttemptDelay, MaxAttemptDelay]. Defaults 2, 10ms (RFC 8305's
	// recommended minimum) and 250ms.
	HedgeFactor                      float64
	MaxAttemptDelay, MinAttemptDelay time.Duration
	// Within one upstream the family with the lower measured RTT goes
	// first when the other family's RTT is more than FamilyRatio times it
	// and more than FamilyMargin above it; otherwise the configured
	// preference decides. Defaults 2 and 10ms.
	FamilyRatio  float64
	FamilyMargin time.Duration
	// Clock runs the hedge timers and attempt timeouts; the real clock
	// when nil.
	Clock clockwork.Clock
}

func (c RaceConfig) withDefaults() RaceConfig {
	if c.HedgeFactor <= 0 {
		c.HedgeFactor = 2
	}
	if c.MaxAttemptDelay <= 0 {
		c.MaxAttemptDelay = 250 * time.Millisecond
	}
	if c.MinAttemptDelay <= 0 {
		c.MinAttemptDelay = 10 * time.Millisecond
	}
	c.MinAttemptDelay = min(c.MinAttemptDelay, c.MaxAttemptDelay)
	if c.FamilyRatio <= 0 {
		c.FamilyRatio = 2
	}
	if c.FamilyMargin <= 0 {
		c.FamilyMargin = 10 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return c
}

// Result is the outcome of a race.
type Result struct {
	Msg  *dns.Msg
	Path *Path // the path that answered; nil when none did
	// Attempts is how many exchanges were started, TC retries over TCP
	// included.
	Attempts int
	// Wire is Msg as the upstream sent it, with Msg's ID, when the
	// exchanger kept it (a whole, untruncated UDP reply); nil otherwise.
	// It belongs to the caller.
	Wire []byte
}

// candidate is a path in a race's order with the estimate it borrows
// while it has none of its own.
type candidate struct {
	p     *Path
	prior Estimate
}

// timeout is the candidate's per-attempt timeout.
func (c candidate) timeout() time.Duration { return c.p.Health.Timeout(c.prior) }

// estimate is the candidate's own estimate, else its prior.
func (c candidate) estimate() Estimate {
	if e := c.p.Health.Estimate(); e.Known() {
		return e
	}
	return c.prior
}

// hedgeEstimate is the estimate the hedge delay is taken from: the
// candidate's own once it has settled, else whichever of its own and its
// prior waits less, so one slow first sample does not hold clients back.
func (c candidate) hedgeEstimate(cfg RaceConfig) Estimate {
	e := c.p.Health.Estimate()
	switch {
	case !e.Known():
		return c.prior
	case e.Samples >= settled || !c.prior.Known():
		return e
	case hedgeDelay(c.prior, cfg) < hedgeDelay(e, cfg):
		return c.prior
	}
	return e
}

// attempt is one exchange of a race and, once done, its outcome.
type attempt struct {
	cand  candidate
	seq   int  // start order within the race
	hedge bool // started by the hedge timer
	retry bool // a TC retry over the path's Stream

	msg   *dns.Msg
	wire  []byte // msg's wire form, when the exchanger kept it
	err   error
	class Class
}

// plan puts paths in the order they will be tried and asks each breaker
// once: trial paths are started at once beside the first (a trial costs the
// client nothing), allowed paths follow the order, denied paths are kept
// back, longest-open first, for when nothing else is left.
//
// allowed is built in order's own array (order is the race's to consume),
// so that the common case, every path allowed, allocates nothing.
func plan(order []candidate) (trials, allowed, denied []candidate) {
	allowed = order[:0]
	for _, c := range order {
		switch c.p.Health.Acquire() {
		case Trial:
			trials = append(trials, c)
		case Allowed:
			allowed = append(allowed, c) // never past the candidate read
		default:
			denied = append(denied, c)
		}
	}
	if len(denied) > 1 {
		opened := make(map[*Path]time.Time, len(denied))
		for _, c := range denied {
			opened[c.p] = c.p.Health.Snapshot().OpenedAt
		}
		slices.SortStableFunc(denied, func(a, b candidate) int { return opened[a.p].Compare(opened[b.p]) })
	}
	return trials, allowed, denied
}

// racer is the state of one race. It is used by one goroutine only; the
// attempts report to it over results.
type racer struct {
	ctx     context.Context
	q       *dns.Msg
	wire    []byte // q packed, nil when each attempt packs its own
	cfg     RaceConfig
	results chan attempt
	spawned bool // an attempt ran on a goroutine of its own

	queue  []candidate // in start order; next is the first not started
	next   int
	denied []candidate

	started int       // attempts started, retries included
	pending int       // attempts started and not yet reported
	newest  int       // seq of the attempt the hedge timer waits on
	waited  candidate // and its candidate
	timer   clockwork.Timer
	tick    <-chan time.Time

	// began is when the race started; fresh while it starts its first
	// attempts, which take began as their own start instead of reading
	// the clock again.
	began time.Time
	fresh bool
}

// race sends q over the candidates in order and returns the first good
// answer.
//
// The first candidate starts at once, with every half-open path's trial
// beside it (or every candidate, when parallel is set). The next one
// starts when the hedge delay of the attempt started last has passed, or
// at once when that attempt fails: exactly one new attempt per trigger,
// so a failure that comes as the timer fires starts one attempt, not two.
// A failure of an older attempt, while a newer one runs, starts nothing.
//
// A truncated UDP answer is retried over the path's Stream as an attempt
// of its own, with its own budget, and its outcome goes to the Stream's
// health; the UDP exchange counts as a success of the UDP path.
//
// Losing attempts are not cancelled when a winner arrives: the query is
// already on the wire, so cancelling saves nothing, and letting it run to
// its own timeout is what tells the loser's health whether it works. Each
// attempt is bounded by its path's RTO and by ctx's deadline; attempts not
// yet started when a winner arrives are never started.
//
// wire, when not nil, is q packed (see packPrepared), for the exchangers
// that send it as it is.
func race(ctx context.Context, q *dns.Msg, wire []byte, order []candidate, parallel bool, cfg RaceConfig) (Result, error) {
	trials, allowed, denied := plan(order)
	queue := allowed
	if len(trials) > 0 {
		queue = append(trials, allowed...)
	}
	if len(allowed) == 0 && len(trials) == 0 && len(denied) > 0 {
		// Every breaker is open: never fail fast, try the one that opened
		// longest ago.
		denied[0].p.Health.Force()
		queue, denied = denied[:1], denied[1:]
	}
	if len(queue) == 0 {
		return Result{}, errNoPaths
	}
	r := &racer{
		ctx: ctx, q: q, wire: wire, cfg: cfg, queue: queue, denied: denied,
		// Every candidate runs at most once plus its TC retry, so no
		// attempt ever blocks on reporting after the race returned.
		results: getResults(2 * len(order)),
		began:   cfg.Clock.Now(), fresh: true,
	}
	defer r.done()
	immediate := len(trials) + 1
	if parallel {
		immediate = len(queue)
	}
	if len(queue) == 1 && len(denied) == 0 {
		// One path and nothing to hedge it with: the attempt runs on
		// this goroutine (no goroutine to start, no stack to grow) and
		// reports to results like any other, so that a TC retry or a
		// failure goes on as below. Only a client that goes away while
		// it runs waits for it: its deadline still bounds the attempt.
		r.next = 1
		r.start(attempt{cand: queue[0]}, true, true)
	}
	for r.next < len(r.queue) && r.next < immediate {
		c := r.queue[r.next]
		r.next++
		r.launch(attempt{cand: c}, r.next > len(trials))
	}
	r.fresh = false
	if r.waited.p == nil {
		// Only trials under way: the timer waits on the last of them,
		// though a trial's failure is no trigger.
		r.waited = r.queue[r.next-1]
	}
	r.arm()

	// fallback is a SERVFAIL/REFUSED or truncated answer, used if
	// nothing better comes. It is a copy, not a pointer to a, so that a
	// stays on the stack.
	var fallback attempt
	var hasFallback bool
	var errs []error
	for {
		a, ev := r.wait(ctx)
		switch ev {
		case ticked:
			r.startNext(true)
			continue
		case ended:
			if hasFallback {
				return Result{Msg: fallback.msg, Path: fallback.cand.p, Attempts: r.started}, nil
			}
			errs = append(errs, ctx.Err())
			return Result{Attempts: r.started}, &RaceError{Errs: errs, began: r.began}
		}
		r.pending--
		switch {
		case a.err == nil && a.class == ClassOK && a.msg.Truncated && !a.retry && a.cand.p.Stream != nil:
			r.launchRetry(a)
			if !hasFallback {
				fallback, hasFallback = a, true
			}
			continue
		case a.err == nil && a.class == ClassOK:
			if a.hedge {
				a.cand.p.Health.Count(EventHedgeWon)
			}
			return Result{Msg: a.msg, Path: a.cand.p, Attempts: r.started, Wire: a.wire}, nil
		case a.err == nil: // SERVFAIL or REFUSED: an answer, maybe not the last word
			if !hasFallback || fallback.msg.Truncated {
				fallback, hasFallback = a, true
			}
		default:
			errs = append(errs, fmt.Errorf("%s: %w", a.cand.p, a.err))
		}
		if a.seq == r.newest {
			r.startNext(false)
		}
		if r.pending == 0 && !r.startNext(false) {
			if hasFallback {
				return Result{Msg: fallback.msg, Path: fallback.cand.p, Attempts: r.started}, nil
			}
			return Result{Attempts: r.started}, &RaceError{Errs: errs, began: r.began}
		}
	}
}

// What a race waits for next.
type event int

const (
	reported event = iota // an attempt reported
	ticked                // the hedge timer fired
	ended                 // the client's context ended
)

// wait returns the next event, with the attempt that reported. An
// outcome already waiting is taken without asking ctx for its channel,
// which a listener's context makes only on demand.
func (r *racer) wait(ctx context.Context) (attempt, event) {
	select {
	case a := <-r.results:
		return a, reported
	default:
	}
	select {
	case a := <-r.results:
		return a, reported
	case <-r.tick:
		r.tick = nil
		return attempt{}, ticked
	case <-ctx.Done():
		return attempt{}, ended
	}
}

// launch starts attempt a. The hedge timer follows the newest attempt
// that is not a trial.
func (r *racer) launch(a attempt, leading bool) { r.start(a, leading, false) }

// start starts attempt a, on this goroutine when inline.
func (r *racer) start(a attempt, leading, inline bool) {
	r.started++
	r.pending++
	a.seq = r.started
	if leading {
		r.newest, r.waited = a.seq, a.cand
	}
	ticket, timeout := a.cand.p.Health.Begin(a.cand.prior)
	if a.retry {
		// The retry may have to open a connection first.
		timeout += handshake(a.cand)
	}
	// A client's attempts outlive the client: letting a loser run to
	// its own timeout is what tells its health whether the path works.
	// They keep the client's deadline, though: past it nobody waits for
	// the answer, and exchangeOn counts an attempt it cut short as
	// canceled, not as the path's timeout.
	cut := false
	if dl, ok := r.ctx.Deadline(); ok {
		var left time.Duration
		if r.fresh {
			left = dl.Sub(r.began)
		} else {
			left = until(r.cfg.Clock, dl)
		}
		if left < timeout {
			timeout, cut = left, true
		}
	}
	if inline {
		// The race's first attempt, started as the race began.
		exchangeOn(r.ctx, true, r.q, r.wire, a, ticket, timeout, cut, r.cfg.Clock, r.began, r.results)
		return
	}
	r.spawned = true
	go exchangeOn(r.ctx, true, r.q, r.wire, a, ticket, timeout, cut, r.cfg.Clock, time.Time{}, r.results)
}

// resultChans holds the results channels of races that started no
// attempt on a goroutine of its own (one path, its attempt inline), by
// capacity: nothing else ever held them. A race that spawned attempts
// leaves its channel to them and the collector.
var resultChans [8]sync.Pool

func getResults(n int) chan attempt {
	if n < len(resultChans) {
		if c, ok := resultChans[n].Get().(chan attempt); ok {
			return c
		}
	}
	return make(chan attempt, n)
}

// done ends the race: it stops the hedge timer and keeps the results
// channel for another race when only this goroutine ever used it.
func (r *racer) done() {
	r.stopTimer()
	if n := cap(r.results); !r.spawned && len(r.results) == 0 && n < len(resultChans) {
		resultChans[n].Put(r.results)
	}
}

// launchRetry starts the TC retry of the UDP attempt u over its path's
// Stream. It takes over u's place: if the timer was waiting on u it now
// waits on the retry, for the retry's own hedge delay.
func (r *racer) launchRetry(u attempt) {
	s := candidate{p: u.cand.p.Stream, prior: u.cand.estimate()}
	lead := u.seq == r.newest
	r.launch(attempt{cand: s, retry: true}, lead)
	if lead {
		r.armFor(s, true)
	}
}

// startNext starts the next candidate, or the next denied one when every
// other has been started. It reports whether it started one.
func (r *racer) startNext(hedge bool) bool {
	var c candidate
	switch {
	case r.next < len(r.queue):
		c = r.queue[r.next]
		r.next++
	case len(r.denied) > 0:
		// Every allowed path has been tried: try the open ones too,
		// longest-open first, while the deadline lasts.
		c = r.denied[0]
		r.denied = r.denied[1:]
		c.p.Health.Force()
	default:
		return false
	}
	if hedge {
		c.p.Health.Count(EventHedge)
	}
	r.launch(attempt{cand: c, hedge: hedge}, true)
	r.arm()
	return true
}

// arm sets the hedge timer for the newest attempt's candidate, when there
// is anything left to start.
func (r *racer) arm() {
	if r.waited.p != nil {
		r.armFor(r.waited, false)
	}
}

func (r *racer) armFor(c candidate, retry bool) {
	r.stopTimer()
	if r.next >= len(r.queue) && len(r.denied) == 0 {
		return // a group with one path never pays for a timer
	}
	d := hedgeDelay(c.hedgeEstimate(r.cfg), r.cfg)
	if retry {
		d = min(d+handshake(c), r.cfg.MaxAttemptDelay)
	}
	r.timer = r.cfg.Clock.NewTimer(d)
	r.tick = r.timer.Chan()
}

func (r *racer) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer, r.tick = nil, nil
	}
}

// coldAttemptDelay is the hedge delay when nothing at all is measured
// yet, as at start before the first probes come back: RFC 8305 §5's
// recommended minimum for a delay not derived from RTT.
const coldAttemptDelay = 100 * time.Millisecond

// hedgeDelay is how long to wait for an attempt whose path is estimated
// at e before starting the next: HedgeFactor·SRTT + 4·RTTVAR, clamped.
// An unmeasured path with no prior waits coldAttemptDelay, at most
// MaxAttemptDelay.
func hedgeDelay(e Estimate, cfg RaceConfig) time.Duration {
	if !e.Known() {
		return min(coldAttemptDelay, cfg.MaxAttemptDelay)
	}
	d := time.Duration(cfg.HedgeFactor*float64(e.SRTT)) + 4*e.RTTVar
	return min(max(d, cfg.MinAttemptDelay), cfg.MaxAttemptDelay)
}

// handshake estimates what opening a connection to c's path costs: one
// round trip, as estimated by c.
func handshake(c candidate) time.Duration {
	if e := c.estimate(); e.Known() {
		return e.SRTT + 4*e.RTTVar
	}
	return c.timeout()
}

// retryBudget is the timeout of a TC retry over a path's Stream: the
// Stream's own timeout (its RTO, or the UDP path's estimate before the
// Stream has one) plus a handshake, since the retry may have to open a
// connection first. The client's deadline still bounds it. launch
// computes the same from the timeout Begin gives.
func retryBudget(c candidate) time.Duration {
	return c.timeout() + handshake(c)
}

// exchangeOn runs one attempt and reports it to health and to results.
// The attempt ends at timeout, at ctx's deadline if sooner, or when ctx is
// canceled. A timeout cut short by a client's deadline (cutShort, or ctx's
// deadline) says nothing about the path. An exchanger that takes wire,
// q packed (nil if not), is given it and hands back the reply's wire
// form; a path with a fault injected never is.
//
// With detach the attempt keeps ctx's values but neither its
// cancellation nor its deadline (the caller cut timeout to it already):
// a race's attempts outlive the client (see racer.start).
//
// begin, when not zero, is when the attempt started, on clock: the
// caller read it a moment before. The attempt's RTT counts from it.
func exchangeOn(ctx context.Context, detach bool, q *dns.Msg, wire []byte, a attempt, ticket Ticket, timeout time.Duration, cutShort bool, clock clockwork.Clock, begin time.Time, results chan<- attempt) {
	p := a.cand.p
	if begin.IsZero() {
		begin = clock.Now()
	}
	var actx context.Context
	if detach {
		c := newAttemptCtx(ctx, clock, begin.Add(timeout))
		defer c.stop()
		actx = c
	} else {
		if dl, ok := ctx.Deadline(); ok {
			if left := dl.Sub(begin); left < timeout {
				timeout, cutShort = left, true
			}
		}
		var cancel context.CancelFunc
		actx, cancel = clockwork.WithTimeout(ctx, clock, timeout)
		defer cancel()
	}
	var end func(Class, error)
	if meta := QueryMeta(actx); meta != nil && meta.Attempt != nil {
		actx, end = meta.Attempt(actx, p.Name())
	}
	var m *dns.Msg
	var err error
	if f := p.Fault(); f != nil {
		m, err = f.exchange(actx, p.Exchanger, q, clock)
	} else if we, ok := p.Exchanger.(wireExchanger); ok {
		m, a.wire, err = we.exchangeWire(actx, q, wire)
	} else {
		m, err = p.Exchanger.Exchange(actx, q)
	}
	rtt := since(clock, begin)
	class := Classify(err)
	if err == nil && (m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused) {
		class = ClassRcode
	}
	if class == ClassTimeout && cutShort {
		// The client's budget ran out before the path's own timeout: that
		// says nothing about the path.
		class = ClassCanceled
	}
	if end != nil {
		end(class, err)
	}
	p.Health.ObserveAttempt(rtt, class, ticket)
	p.Health.observeExchange(rtt)
	p.Health.noteError(class, err, m, begin.Add(rtt))
	a.msg, a.err, a.class = m, err, class
	results <- a
}

var errNoPaths = errors.New("no paths to any upstream")

// RaceError is returned when no path answered. It holds every attempt's
// error.
type RaceError struct {
	Errs  []error
	began time.Time // when the race started, on its clock
}

func (e *RaceError) Error() string {
	if len(e.Errs) == 0 {
		return "no path answered"
	}
	return "no path answered: " + errors.Join(e.Errs...).Error()
}

// Unwrap exposes the attempts' errors to errors.Is/As.
func (e *RaceError) Unwrap() []error { return e.Errs }

// timedOut reports whether any attempt timed out: a reason to try again
// while the client still waits.
func (e *RaceError) timedOut() bool {
	for _, err := range e.Errs {
		if c := Classify(err); c == ClassTimeout || c == ClassTruncated {
			return true
		}
	}
	return false
}

// Timeouts reports whether every attempt failed by timing out (as opposed
// to the network refusing): the difference between EDE 22 and EDE 23.
func (e *RaceError) Timeouts() bool {
	for _, err := range e.Errs {
		if c := Classify(err); c != ClassTimeout && c != ClassCanceled {
			return false
		}
	}
	return true
}
