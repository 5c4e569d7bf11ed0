package l2

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Budget estimation: the budget is how long a miss waits for Redis before
// it asks the upstream too. It starts at the configured budget; once
// enough lookups have been timed it is budgetFactor times the p99 of the
// last budgetWindow lookups, never above the configured budget nor below
// the configured floor. A faster Redis thus costs a miss less when it
// does not answer in time, and a Redis that slows down gets the full
// budget again as its p99 rises.
const (
	budgetWindow = 256
	budgetEvery  = 32 // recompute after this many new samples
	budgetFactor = 3
)

// A budget keeps the recent lookup latencies and the budget derived from
// them. It is safe for concurrent use; current costs one atomic load.
type budget struct {
	cur      atomic.Int64 // nanoseconds
	p99      atomic.Int64
	max, min time.Duration

	mu      sync.Mutex
	samples [budgetWindow]time.Duration
	n       int // samples taken, in total
	scratch []time.Duration
}

func newBudget(max, min time.Duration) *budget {
	b := &budget{max: max, min: min}
	b.cur.Store(int64(max))
	return b
}

// current returns the budget in force.
func (b *budget) current() time.Duration { return time.Duration(b.cur.Load()) }

// observe records the latency of one lookup (a timed-out one counts as
// its timeout).
func (b *budget) observe(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.samples[b.n%budgetWindow] = d
	b.n++
	if b.n < budgetEvery || b.n%budgetEvery != 0 {
		return
	}
	k := min(b.n, budgetWindow)
	b.scratch = append(b.scratch[:0], b.samples[:k]...)
	slices.Sort(b.scratch)
	p99 := b.scratch[(k*99-1)/100]
	b.p99.Store(int64(p99))
	b.cur.Store(int64(min(max(budgetFactor*p99, b.min), b.max)))
}
