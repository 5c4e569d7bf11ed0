package transport

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// attemptCtx is the context of one race attempt: parent's values, none of
// its cancellation (an attempt outlives the client, see racer.start), and
// a deadline kept by clock. It is context.WithoutCancel and
// clockwork.WithTimeout in one object whose Done channel and timer are
// made only when someone asks for Done: the UDP exchanger does not (it
// arms its own timer on the query's wait, see udpPool.exchange), so an
// attempt over UDP costs one allocation here instead of five.
//
// Err is non-nil once the deadline has passed, and Done is closed by then.
// stop releases the timer, if one was made; an attemptCtx is not used
// after its attempt.
type attemptCtx struct {
	parent   context.Context
	deadline time.Time
	clock    clockwork.Clock

	mu    sync.Mutex
	done  chan struct{} // made by Done
	timer clockwork.Timer
	ended bool
}

var _ context.Context = (*attemptCtx)(nil)

// newAttemptCtx returns the context of an attempt that ends at deadline,
// a time on clock.
func newAttemptCtx(parent context.Context, clock clockwork.Clock, deadline time.Time) *attemptCtx {
	return &attemptCtx{parent: parent, deadline: deadline, clock: clock}
}

func (c *attemptCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *attemptCtx) Value(key any) any           { return c.parent.Value(key) }

// Done returns a channel closed at the deadline, arming a timer for it
// the first time.
func (c *attemptCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		// Whoever asks is about to wait on the query's behalf; the
		// parent's Done, which would say so, is not asked.
		pipeline.Waits(c.parent)
		c.done = make(chan struct{})
		left := until(c.clock, c.deadline)
		if left <= 0 {
			// Past the deadline already: closed now, as
			// context.WithDeadline does, not by a timer a moment later
			// (a caller choosing between Done and other work must see
			// it).
			c.ended = true
		}
		if c.ended {
			close(c.done)
		} else {
			c.timer = c.clock.AfterFunc(left, c.end)
		}
	}
	return c.done
}

// Err returns context.DeadlineExceeded once the deadline has passed.
func (c *attemptCtx) Err() error {
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if !ended {
		if until(c.clock, c.deadline) > 0 {
			return nil
		}
		c.end()
	}
	return context.DeadlineExceeded
}

// end marks the deadline passed and closes Done.
func (c *attemptCtx) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	if c.done != nil {
		close(c.done)
	}
}

// stop releases the timer Done armed, if any.
func (c *attemptCtx) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}
