package listen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
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
type budget struct {
	deadline time.Time
	inner    atomic.Pointer[innerCtx] // nil until asked for

	mu    sync.Mutex // orders making inner against end
	ended atomic.Bool
}

type innerCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*budget)(nil)

func newBudget(deadline time.Time) *budget { return &budget{deadline: deadline} }

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

// Value returns nil for every key but the ones package context uses to
// find the cancelable context inside (see Done).
func (b *budget) Value(key any) any {
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
	defer b.mu.Unlock()
	if in := b.inner.Load(); in != nil {
		return in
	}
	in := new(innerCtx)
	in.ctx, in.cancel = context.WithDeadline(context.Background(), b.deadline)
	if b.ended.Load() {
		in.cancel()
	}
	b.inner.Store(in)
	return in
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
