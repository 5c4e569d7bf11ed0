package listen

import (
	"context"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// A DoQ listener that drains (DrainConns, during a binary upgrade) keeps
// its socket and goes on serving the connections it has, but closes each
// with DOQ_NO_ERROR (RFC 9250 §4.3) as soon as it is idle, so that its
// client opens a new one, which the new process serves: during an
// upgrade the packets that open connections are forwarded to it (see
// QUICRouting). Those still busy at the drain deadline are closed then,
// once the queries they have sent are answered.
//
// DoQ has no GOAWAY: the client learns that a connection ends only from
// the CONNECTION_CLOSE. A connection is closed when its streams are
// answered and it has been quiet for a while (see quiet); just before
// closing, the listener takes every stream quic-go has received, and
// serves those instead of closing. What is left is a stream whose packet
// is still on its way, or received by quic-go but not yet handed to the
// connection's streams, when the close is sent: about one one-way delay.
// Its client sees the connection closed with DOQ_NO_ERROR and no reply on
// the stream, and must ask again on a new connection. The quiet time
// makes this unlikely for a client that asks its next query when the
// previous answer arrives (it comes within one round trip) and for a
// client that has just connected; a client that sends a query now and
// then, just as the quiet time ends, can still meet it.

// doqPhase is what a DoQ listener does with its connections: serve them,
// or drain them until deadline. A phase is replaced, never changed; ctx
// is canceled when it is replaced or the listener closes.
type doqPhase struct {
	ctx      context.Context
	cancel   context.CancelFunc
	draining bool
	deadline time.Time
}

// setPhase makes a new phase current and ends the one it replaces.
func (l *DoQ) setPhase(draining bool, deadline time.Time) *doqPhase {
	ctx, cancel := context.WithCancel(l.stop)
	ph := &doqPhase{ctx: ctx, cancel: cancel, draining: draining, deadline: deadline}
	if old := l.phase.Swap(ph); old != nil {
		old.cancel()
	}
	return ph
}

// DrainConns closes every connection of the listener with DOQ_NO_ERROR
// as soon as it is idle (no query in flight, none waiting, quiet for a
// few round trips), and at timeout those still busy, once the queries
// they have sent are answered: no connection with a query in flight is
// closed before timeout. The listener serves on, socket and all:
// connections handed to it meanwhile (handshakes under way when the
// drain began; every new connection when its packets are not forwarded
// elsewhere) are served and closed the same way. It returns once no
// connection is open, or StopDrainConns or Close was called, or timeout
// and the time to answer the last queries (QueryTimeout and a grace) have
// passed, with an error saying how many are still open. Safe for
// concurrent use.
func (l *DoQ) DrainConns(timeout time.Duration) error {
	ph := l.setPhase(true, time.Now().Add(timeout))
	start := time.Now()
	t := time.NewTimer(timeout + l.limits().QueryTimeout + 2*drainGrace)
	defer t.Stop()
	for {
		n := l.openConnCount()
		if n == 0 {
			l.log.Info("doq connections drained", "after", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		select {
		case <-l.connsGone:
		case <-ph.ctx.Done():
			return nil
		case <-t.C:
			return fmt.Errorf("doq listener %s: %d connections still open after draining for %v", l.addr, n, time.Since(start).Round(time.Millisecond))
		}
	}
}

// StopDrainConns ends a drain: the connections open are served as before
// it, and kept open. Safe for concurrent use.
func (l *DoQ) StopDrainConns() { l.setPhase(false, time.Time{}) }

// openConnCount returns the number of connections the listener holds.
func (l *DoQ) openConnCount() int {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	return len(l.conns)
}

// quiet returns how long dc must have had no stream in flight to be
// closed as idle: three smoothed RTTs and 5 ms, as linger waits for the
// last replies to be acknowledged, so that the next query of a client
// that asks upon each answer has arrived by then; at most drainGrace.
func (l *DoQ) quiet(dc *doqConn) time.Duration {
	return min(3*dc.qc.ConnectionStats().SmoothedRTT+5*time.Millisecond, drainGrace)
}

// drainConn serves dc while the listener drains (phase ph): it takes the
// streams that come, and closes dc with DOQ_NO_ERROR once the handshake
// is complete, no stream is in flight, none has ended for quiet, and no
// stream waits in quic-go. At ph's deadline it closes dc through
// closeDrained. It returns once dc is closed, or when the phase ends.
func (l *DoQ) drainConn(dc *doqConn, ph *doqPhase) {
	for dc.qc.Context().Err() == nil && ph.ctx.Err() == nil {
		now := time.Now()
		if !now.Before(ph.deadline) {
			l.closeDrained(dc, ph)
			return
		}
		if !dc.handshakeDone() {
			t := time.NewTimer(ph.deadline.Sub(now))
			select {
			case <-dc.qc.HandshakeComplete():
				dc.touch()
			case <-dc.qc.Context().Done():
			case <-ph.ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		until := ph.deadline
		ctx, cancel := context.WithCancel(ph.ctx)
		if since, idle := dc.idleSince(cancel); idle {
			quietAt := since.Add(l.quiet(dc))
			if !now.Before(quietAt) {
				cancel()
				if s, ok := acceptWaiting(dc); ok {
					l.take(dc, s)
					continue
				}
				l.log.Debug("closing idle doq connection while draining", "client", dc.client.String())
				dc.qc.CloseWithError(doqNoError, "")
				return
			}
			if quietAt.Before(until) {
				until = quietAt
			}
		}
		ctx, cancelT := context.WithDeadline(ctx, until)
		s, err := dc.qc.AcceptStream(ctx)
		cancelT()
		cancel()
		if err == nil {
			l.take(dc, s)
		}
	}
}

// closeDrained closes dc at the drain deadline: it takes the streams
// that wait in quic-go, then no more, waits for those in flight to be
// answered (at most QueryTimeout and a grace), lets the last replies
// reach the client (see linger) and closes dc with DOQ_NO_ERROR. It
// returns early when the phase ends.
func (l *DoQ) closeDrained(dc *doqConn, ph *doqPhase) {
	for {
		s, ok := acceptWaiting(dc)
		if !ok {
			break
		}
		l.take(dc, s)
	}
	until := time.Now().Add(l.limits().QueryTimeout + drainGrace)
	for time.Now().Before(until) {
		ctx, cancel := context.WithDeadline(ph.ctx, until)
		_, idle := dc.idleSince(cancel)
		if !idle {
			select {
			case <-ctx.Done():
			case <-dc.qc.Context().Done():
			}
		}
		cancel()
		if idle || ph.ctx.Err() != nil || dc.qc.Context().Err() != nil {
			break
		}
	}
	if ph.ctx.Err() != nil {
		return
	}
	if _, idle := dc.idleSince(nil); !idle {
		l.log.Warn("doq queries still in flight at the drain deadline", "client", dc.client.String())
	}
	l.linger([]*doqConn{dc})
	dc.qc.CloseWithError(doqNoError, "")
}

// acceptWaiting returns a stream of dc that quic-go has received and the
// listener not yet taken, without waiting for one.
func acceptWaiting(dc *doqConn) (*quic.Stream, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := dc.qc.AcceptStream(ctx) // takes a waiting stream before looking at ctx
	return s, err == nil
}

// begin counts a stream taken; end, called once it is done, uncounts it.
func (dc *doqConn) begin() {
	dc.mu.Lock()
	dc.streams++
	dc.mu.Unlock()
}

func (dc *doqConn) end() {
	dc.mu.Lock()
	dc.streams--
	dc.lastDone = time.Now()
	if dc.streams == 0 && dc.wake != nil {
		dc.wake()
		dc.wake = nil
	}
	dc.mu.Unlock()
}

// touch restarts the quiet time of dc, as if a stream had just ended.
func (dc *doqConn) touch() {
	dc.mu.Lock()
	dc.lastDone = time.Now()
	dc.mu.Unlock()
}

// idleSince reports whether no stream of dc is in flight and, if so,
// since when. Otherwise it has wake, when not nil, called once the last
// one ends.
func (dc *doqConn) idleSince(wake context.CancelFunc) (time.Time, bool) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.streams == 0 {
		return dc.lastDone, true
	}
	if wake != nil {
		dc.wake = wake
	}
	return time.Time{}, false
}
