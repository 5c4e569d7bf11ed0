package consul

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// Rules of the watch loop, after Consul's advice for blocking queries
// ("Blocking Queries: implementation details").
const (
	// watchRate and watchBurst are the token bucket every request of a
	// watch takes from: an index that moves with unrelated churn makes
	// a blocking query return at once, and the bucket, not a sleep,
	// keeps that from turning into a busy loop.
	watchRate  = rate.Limit(10)
	watchBurst = 2
	// backoffBase doubles per consecutive error up to backoffMax, with
	// jitter; Consul's api/watch caps at 180 s, far too long for DNS.
	backoffBase = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
)

// fetchFunc asks Consul for the state at index (0: at once; any other
// index blocks until Consul's index passes it or the wait ends). It
// returns the state and Consul's new index.
type fetchFunc[T any] func(ctx context.Context, index uint64) (T, uint64, error)

// nextIndex applies Consul's index rules to the index a response
// carried: an index that went backwards (a restarted or other server, a
// snapshot restore) resets to 0, so that the next request reads the
// state at once instead of blocking on an index the server may never
// reach; and an index of 0 from the server is taken as 1, since blocking
// on 0 does not block at all. The reset itself is the one request sent
// with 0 (as is the first request after an error, see watch.run).
func nextIndex(prev, got uint64) uint64 {
	if got < prev {
		return 0
	}
	if got == 0 {
		return 1
	}
	return got
}

// backoff returns the wait after the n-th consecutive error (n ≥ 1):
// backoffBase doubled n-1 times, capped at backoffMax, drawn in [d/2, d].
func backoff(n int, r *rand.Rand) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

// A view is a watch's last good state; it is never modified.
type view[T any] struct {
	val T
}

// watch runs a blocking-query loop over fetch and keeps the last state
// that differs from the one before. It is safe for concurrent use; stop
// ends the loop and waits for it.
type watch[T any] struct {
	fetch fetchFunc[T]
	equal func(a, b T) bool
	clock clockwork.Clock
	// onSwap is called after a new state was stored; may be nil.
	onSwap func(T)

	cur atomic.Pointer[view[T]]
	// okAt is the clock time (UnixNano) the view was last known
	// current: the last good response, or the moment a blocking query
	// held open since one failed (the agent went away; until then it
	// would have answered any change).
	okAt atomic.Int64
	// blocking is the clock time (UnixNano) a blocking query was sent
	// that is still open; 0 when none is.
	blocking atomic.Int64
	ready    chan struct{}
	once     sync.Once
	cancel   context.CancelFunc
	done     chan struct{}

	// requests counts requests sent, swaps the states stored, errors
	// the failed requests.
	requests, swaps, errors atomic.Uint64
	// lastUsed is when a query last read the watch, UnixNano on clock.
	lastUsed atomic.Int64
	// lastErr is the last error, for the log; nil after a success.
	lastErr atomic.Pointer[error]
}

func newWatch[T any](fetch fetchFunc[T], equal func(a, b T) bool, clock clockwork.Clock) *watch[T] {
	w := &watch[T]{fetch: fetch, equal: equal, clock: clock, ready: make(chan struct{}), done: make(chan struct{})}
	w.lastUsed.Store(clock.Now().UnixNano())
	return w
}

// start runs the loop until stop.
func (w *watch[T]) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
}

// stop ends the loop and waits for it to return.
func (w *watch[T]) stop() {
	w.cancel()
	<-w.done
}

// get returns the last good state, its age, and whether there is one.
func (w *watch[T]) get() (T, time.Duration, bool) {
	v := w.cur.Load()
	if v == nil {
		var zero T
		return zero, 0, false
	}
	now := w.clock.Now()
	if b := w.blocking.Load(); b != 0 && now.Sub(time.Unix(0, b)) <= heldMax {
		return v.val, 0, true // held open by the agent: current
	}
	return v.val, now.Sub(time.Unix(0, w.okAt.Load())), true
}

// heldMax is how long a blocking query may stay open before the agent is
// taken for hung: Consul answers within the wait time plus up to a
// sixteenth of it of jitter.
const heldMax = BlockWait + BlockWait/16 + time.Second

// touch records a use now.
func (w *watch[T]) touch() { w.lastUsed.Store(w.clock.Now().UnixNano()) }

// waitReady waits for the first state, up to d of the watch's clock, or
// until ctx ends. It reports whether there is one.
func (w *watch[T]) waitReady(ctx context.Context, d time.Duration) bool {
	select {
	case <-w.ready:
		return true
	default:
	}
	t := w.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-t.Chan():
	case <-ctx.Done():
	}
	return false
}

func (w *watch[T]) run(ctx context.Context) {
	defer close(w.done)
	lim := rate.NewLimiter(watchRate, watchBurst)
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var index uint64
	fails := 0
	for {
		if !w.sleep(ctx, lim.ReserveN(w.clock.Now(), 1).DelayFrom(w.clock.Now())) {
			return
		}
		w.requests.Add(1)
		sent := w.clock.Now()
		if index > 0 {
			w.blocking.Store(sent.UnixNano())
		}
		val, got, err := w.fetch(ctx, index)
		// okAt moves before blocking clears, so that get never sees
		// neither and takes a view just confirmed for an old one.
		if now := w.clock.Now(); err == nil || (index > 0 && now.Sub(sent) <= heldMax && w.cur.Load() != nil) {
			w.okAt.Store(now.UnixNano())
		}
		w.blocking.Store(0)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.errors.Add(1)
			w.lastErr.Store(&err)
			fails++
			// The agent that answers next may be another one, or the
			// same restarted with a new, lower index: blocking on the
			// old index there would wait out the whole wait time
			// before the view recovers. Read at once instead.
			index = 0
			if !w.sleep(ctx, backoff(fails, rnd)) {
				return
			}
			continue
		}
		fails = 0
		w.lastErr.Store(nil)
		index = nextIndex(index, got)
		if old := w.cur.Load(); old == nil || !w.equal(old.val, val) {
			w.cur.Store(&view[T]{val: val})
			w.swaps.Add(1)
			if w.onSwap != nil {
				w.onSwap(val)
			}
		}
		w.once.Do(func() { close(w.ready) })
	}
}

// sleep waits d on the watch's clock; false when ctx ended first.
func (w *watch[T]) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := w.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		return false
	}
}
