package l2

import (
	"sync"
	"sync/atomic"
	"time"
)

// Breaker states, exported as dnsedge_l2_breaker_state.
const (
	stateClosed   = 0 // Redis is asked
	stateOpen     = 1 // Redis is skipped until the cooldown ends
	stateHalfOpen = 2 // one probe is in flight; Redis is still skipped
)

// A breaker decides whether Redis is asked. It opens after Failures
// consecutive failures (errors, or lookups slower than the budget); while
// open, lookups and writes skip Redis. When the cooldown has passed, the
// next call to allow asks its caller to probe Redis in the background and
// goes half-open; the probe's success closes the breaker, its failure
// opens it again with the cooldown doubled, up to maxCooldown. Queries
// never wait on a probe. It is safe for concurrent use.
type breaker struct {
	state atomic.Int32 // read without mu on the query path

	mu                    sync.Mutex
	now                   func() time.Time
	failures              int // consecutive, while closed
	threshold             int
	cooldown, maxCooldown time.Duration
	backoff               time.Duration // the current cooldown
	until                 time.Time     // end of the cooldown while open
	opens                 atomic.Uint64
}

func newBreaker(threshold int, cooldown, maxCooldown time.Duration, now func() time.Time) *breaker {
	return &breaker{now: now, threshold: threshold, cooldown: cooldown, maxCooldown: maxCooldown, backoff: cooldown}
}

// allow reports whether Redis may be asked now. probe is true when the
// caller must start a background probe and report its outcome with
// probed.
func (b *breaker) allow() (ok, probe bool) {
	if b.state.Load() == stateClosed {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() == stateOpen && !b.now().Before(b.until) {
		b.state.Store(stateHalfOpen)
		return false, true
	}
	return b.state.Load() == stateClosed, false
}

// success records a call that answered within the budget.
func (b *breaker) success() {
	if b.state.Load() != stateClosed {
		return // only a probe moves an open breaker
	}
	b.mu.Lock()
	b.failures = 0
	b.mu.Unlock()
}

// failure records a call that failed or was slower than the budget.
func (b *breaker) failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() != stateClosed {
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.open()
	}
}

// probed records the outcome of the probe allow asked for.
func (b *breaker) probed(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() != stateHalfOpen {
		return
	}
	if ok {
		b.state.Store(stateClosed)
		b.failures = 0
		b.backoff = b.cooldown
		return
	}
	b.backoff = min(2*b.backoff, b.maxCooldown)
	b.open()
}

// open opens the breaker for the current cooldown; mu held.
func (b *breaker) open() {
	b.state.Store(stateOpen)
	b.until = b.now().Add(b.backoff)
	b.failures = 0
	b.opens.Add(1)
}
