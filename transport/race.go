package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// RaceConfig tunes the race engine.
type RaceConfig struct {
	// MaxAttemptDelay caps how long the engine waits for one path before
	// starting the next (RFC 8305 §5 "Connection Attempt Delay"). The
	// delay for a path is its RTO, clamped to [MinAttemptDelay,
	// MaxAttemptDelay]. Defaults 250ms and 10ms.
	MaxAttemptDelay, MinAttemptDelay time.Duration
}

func (c RaceConfig) withDefaults() RaceConfig {
	if c.MaxAttemptDelay <= 0 {
		c.MaxAttemptDelay = 250 * time.Millisecond
	}
	if c.MinAttemptDelay <= 0 {
		c.MinAttemptDelay = 10 * time.Millisecond
	}
	c.MinAttemptDelay = min(c.MinAttemptDelay, c.MaxAttemptDelay)
	return c
}

// Result is the outcome of a race.
type Result struct {
	Msg  *dns.Msg
	Path *Path // the path that answered; nil when none did
	// Attempts is how many paths were started.
	Attempts int
}

type attempt struct {
	path  *Path
	msg   *dns.Msg
	err   error
	class Class
}

// plan puts paths in the order they will be tried and asks each breaker
// once: trial paths are started at once beside the first (a trial costs the
// client nothing), allowed paths follow the order, denied paths are kept
// back, longest-open first, for when nothing else is left.
func plan(order []*Path) (trials, allowed, denied []*Path) {
	for _, p := range order {
		switch p.Health.Acquire() {
		case Trial:
			trials = append(trials, p)
		case Allowed:
			allowed = append(allowed, p)
		default:
			denied = append(denied, p)
		}
	}
	if len(denied) > 1 {
		opened := make(map[*Path]time.Time, len(denied))
		for _, p := range denied {
			opened[p] = p.Health.Snapshot().OpenedAt
		}
		slices.SortStableFunc(denied, func(a, b *Path) int { return opened[a].Compare(opened[b]) })
	}
	return trials, allowed, denied
}

// race sends q over the paths in order and returns the first good answer.
//
// Losing attempts are not cancelled when a winner arrives: the query is
// already on the wire, so cancelling saves nothing, and letting it run to
// its own timeout is what tells the loser's health whether it works. Each
// attempt is bounded by its path's RTO and by ctx's deadline; attempts not
// yet started when a winner arrives are never started.
func race(ctx context.Context, q *dns.Msg, order []*Path, parallel bool, cfg RaceConfig) (Result, error) {
	trials, allowed, denied := plan(order)
	queue := append(trials, allowed...)
	if len(allowed) == 0 && len(trials) == 0 && len(denied) > 0 {
		// Every breaker is open: never fail fast, try the one that opened
		// longest ago.
		denied[0].Health.Force()
		queue, denied = denied[:1], denied[1:]
	}
	if len(queue) == 0 {
		return Result{}, errNoPaths
	}
	results := make(chan attempt, len(order))
	var res Result
	start := func(p *Path) {
		res.Attempts++
		go exchangeOn(ctx, p, q, results)
	}
	immediate := len(trials) + 1
	if parallel {
		immediate = len(queue)
	}
	next := 0
	for ; next < len(queue) && next < immediate; next++ {
		start(queue[next])
	}
	// The attempt-delay timer exists only while there is something left to
	// start: a group with one path never pays for it.
	var timer *time.Timer
	var tick <-chan time.Time
	arm := func(d time.Duration) {
		if next >= len(queue) && len(denied) == 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(d)
			tick = timer.C
			return
		}
		timer.Reset(d)
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	arm(attemptDelay(queue[next-1], cfg))

	var fallback *attempt // a SERVFAIL/REFUSED answer, used if nothing better comes
	var errs []error
	pending := res.Attempts
	startNext := func() bool {
		if next < len(queue) {
			start(queue[next])
			next++
			arm(attemptDelay(queue[next-1], cfg))
			pending++
			return true
		}
		if len(denied) > 0 {
			// Every allowed path has been tried: try the open ones too,
			// longest-open first, while the deadline lasts.
			denied[0].Health.Force()
			queue = append(queue, denied[0])
			denied = denied[1:]
			start(queue[next])
			next++
			arm(attemptDelay(queue[next-1], cfg))
			pending++
			return true
		}
		return false
	}
	for {
		select {
		case a := <-results:
			pending--
			switch {
			case a.err == nil && a.class == ClassOK:
				res.Msg, res.Path = a.msg, a.path
				return res, nil
			case a.err == nil: // SERVFAIL or REFUSED: an answer, maybe not the last word
				if fallback == nil {
					fallback = &a
				}
			default:
				errs = append(errs, fmt.Errorf("%s: %w", a.path, a.err))
			}
			if !startNext() && pending == 0 {
				if fallback != nil {
					res.Msg, res.Path = fallback.msg, fallback.path
					return res, nil
				}
				return res, &RaceError{Errs: errs}
			}
		case <-tick:
			startNext()
		case <-ctx.Done():
			if fallback != nil {
				res.Msg, res.Path = fallback.msg, fallback.path
				return res, nil
			}
			errs = append(errs, ctx.Err())
			return res, &RaceError{Errs: errs}
		}
	}
}

// attemptDelay is how long to wait for p before starting the next path.
func attemptDelay(p *Path, cfg RaceConfig) time.Duration {
	return min(max(p.Health.RTO(), cfg.MinAttemptDelay), cfg.MaxAttemptDelay)
}

// exchangeOn runs one attempt and reports it to health and to results.
func exchangeOn(ctx context.Context, p *Path, q *dns.Msg, results chan<- attempt) {
	rto := p.Health.RTO()
	timeout, cutShort := rto, false
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout, cutShort = left, true
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	begin := time.Now()
	m, err := p.Exchanger.Exchange(actx, q)
	rtt := time.Since(begin)
	class := Classify(err)
	if err == nil && (m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused) {
		class = ClassRcode
	}
	if class == ClassTimeout && cutShort {
		// The client's budget ran out before the path's own timeout: that
		// says nothing about the path.
		class = ClassCanceled
	}
	p.Health.Observe(rtt, class)
	results <- attempt{path: p, msg: m, err: err, class: class}
}

var errNoPaths = errors.New("no paths to any upstream")

// RaceError is returned when no path answered. It holds every attempt's
// error.
type RaceError struct{ Errs []error }

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
		if Classify(err) == ClassTimeout {
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
