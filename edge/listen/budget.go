package listen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// budget is the context a query is served under: it has a deadline,
// QueryTimeout after the query started, no values, and ends when the
// listener is done with the query. It behaves like context.WithDeadline
// over context.Background, but its Done channel, and the timer that closes
// it, are only made when someone asks for them: a query answered from the
// cache never does, which spares it the timer and three of the four
// allocations of context.WithTimeout. Once made, every method delegates
// to a context.WithDeadline, so that contexts derived from a budget are
// registered with it the standard way (no goroutine per child). Safe for
// concurrent use.
//
// Asking for the Done channel is also how a query says it is about to
// wait (for an upstream, another query's answer, a store): the budget
// tells its hook, once, when it makes the delegate. The UDP listener
// serves a query on the goroutine that read it and uses the hook to hand
// the reading on before that goroutine waits (see udpReader).
type budget struct {
	deadline time.Time
	inner    atomic.Pointer[innerCtx] // nil until asked for
	hook     waitHook

	mu    sync.Mutex // orders making inner against end
	ended atomic.Bool
	told  atomic.Bool // hook told
}

type innerCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*budget)(nil)

// waitHook is told when a query is about to wait; w nil: nobody is.
type waitHook struct {
	w   waiter
	seq uint64 // which of w's queries
}

// waiter is told, on whatever goroutine asked first, that the query seq
// is about to wait.
type waiter interface{ willWait(seq uint64) }

func newBudget(deadline time.Time, h waitHook) *budget { return &budget{deadline: deadline, hook: h} }

// Deadline returns the query's deadline.
func (b *budget) Deadline() (time.Time, bool) { return b.deadline, true }

// Done returns a channel closed when the deadline passes or the query
// ends.
func (b *budget) Done() <-chan struct{} { return b.get().ctx.Done() }

// Err returns nil until Done is closed, then context.DeadlineExceeded or
// context.Canceled.
func (b *budget) Err() error {
	if in := b.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if !b.ended.Load() && time.Now().Before(b.deadline) {
		return nil
	}
	return b.get().ctx.Err()
}

// Value returns the budget as the query's pipeline.Waiter when it has a
// hook, and nil for every other key but the ones package context uses to
// find the cancelable context inside (see Done).
func (b *budget) Value(key any) any {
	if key == any(pipeline.WaiterKey) {
		if b.hook.w == nil {
			return nil
		}
		return b
	}
	if in := b.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return nil
}

func (b *budget) String() string { return "listen.budget" }

// get returns the delegate, making it on first use: already canceled when
// the query has ended.
func (b *budget) get() *innerCtx {
	if in := b.inner.Load(); in != nil {
		return in
	}
	b.mu.Lock()
	if in := b.inner.Load(); in != nil {
		b.mu.Unlock()
		return in
	}
	in := new(innerCtx)
	in.ctx, in.cancel = context.WithDeadline(context.Background(), b.deadline)
	ended := b.ended.Load()
	if ended {
		in.cancel()
	}
	b.inner.Store(in)
	b.mu.Unlock()
	if !ended {
		b.Waits()
	}
	return in
}

// Waits tells the hook, the first time, that the query is about to wait,
// unless it has ended.
func (b *budget) Waits() {
	if b.hook.w != nil && !b.ended.Load() && b.told.CompareAndSwap(false, true) {
		b.hook.w.willWait(b.hook.seq)
	}
}

// end cancels the budget: the listener is done with the query. Calling it
// again does nothing.
func (b *budget) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended.Store(true)
	if in := b.inner.Load(); in != nil {
		in.cancel()
	}
}
