package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// connError is why a connection ended, with the class its pending queries
// get.
type connError struct {
	class Class
	err   error
}

// Reasons a connection ends besides I/O errors.
var (
	errIdle    = &connError{ClassNetwork, errors.New("connection idle")}
	errRetired = &connError{ClassNetwork, errors.New("connection retired")}
	errClosed  = &connError{ClassCanceled, net.ErrClosed}
)

// tcpConn is one connection of a TCP exchanger with the queries pending on
// it. Lock order: TCP.mu before tcpConn.mu.
type tcpConn struct {
	t         *TCP
	nc        net.Conn
	wlock     chan struct{} // one token: one writer at a time
	dead      chan struct{} // closed when err is set
	idleTimer *time.Timer

	mu        sync.Mutex
	err       *connError // set once, when the connection ends
	pending   map[uint16]*tcpCall
	frames    uint64    // replies read, matched or not
	idleSince time.Time // by t.now, when pending last became empty
	// retired: no new queries; close once pending drains. Set when a
	// query timed out with nothing read since it was sent.
	retired bool
}

// tcpCall is one query waiting for its reply. ch receives exactly one
// result iff the call is removed from pending by the reader or by
// failLocked, so a call back in its pool always has an empty ch.
type tcpCall struct {
	ch     chan tcpResult
	frames uint64 // tcpConn.frames when the call was registered
}

type tcpResult struct {
	buf *[]byte // the reply, from msgBufPool; the receiver puts it back
	n   int
	err *connError
}

var tcpCallPool = sync.Pool{New: func() any { return &tcpCall{ch: make(chan tcpResult, 1)} }}

func newTCPConn(t *TCP, nc net.Conn) *tcpConn {
	c := &tcpConn{
		t:         t,
		nc:        nc,
		wlock:     make(chan struct{}, 1),
		dead:      make(chan struct{}),
		pending:   make(map[uint16]*tcpCall),
		idleSince: t.now(),
	}
	c.idleTimer = time.AfterFunc(t.idle, c.idleCheck)
	return c
}

// exchange sends frame (a length-prefixed query whose ID it overwrites) and
// waits for the reply matching q. On error it returns the class the
// failure belongs to.
func (c *tcpConn) exchange(ctx context.Context, frame []byte, q *dns.Msg, mac string) (*dns.Msg, Class, error) {
	call := tcpCallPool.Get().(*tcpCall)
	id, cerr := c.register(call)
	if cerr != nil {
		tcpCallPool.Put(call)
		return nil, cerr.class, fmt.Errorf("send query: %w", cerr.err)
	}
	binary.BigEndian.PutUint16(frame[2:], id)
	if class, err := c.write(ctx, frame); err != nil {
		c.abandon(id, call)
		return nil, class, err
	}

	var res tcpResult
	select {
	case res = <-call.ch:
	case <-ctx.Done():
		if !c.unregister(id, call) {
			res = <-call.ch // answered or failed meanwhile: take it
			break
		}
		frames := call.frames
		tcpCallPool.Put(call)
		class := ctxClass(ctx)
		if class == ClassTimeout {
			c.retireIfSilent(frames)
		}
		return nil, class, fmt.Errorf("wait for reply: %w", ctx.Err())
	}
	tcpCallPool.Put(call)
	if res.err != nil {
		return nil, res.err.class, res.err.err
	}
	defer putMsgBuf(res.buf)
	r, err := matchReply((*res.buf)[:res.n], id, q)
	if err == nil {
		err = c.t.p.checkReply((*res.buf)[:res.n], r, mac)
	}
	if err != nil {
		return nil, ClassMalformed, fmt.Errorf("read reply: %w", err)
	}
	return r, ClassOK, nil
}

func ctxClass(ctx context.Context) Class {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ClassCanceled
	}
	return ClassTimeout
}

// register adds call to pending under a random message ID not in flight on
// this connection.
func (c *tcpConn) register(call *tcpCall) (uint16, *connError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.retired {
		return 0, errRetired
	}
	id := dns.Id()
	for c.pending[id] != nil {
		id = dns.Id()
	}
	c.pending[id] = call
	call.frames = c.frames
	c.idleTimer.Stop()
	return id, nil
}

// unregister removes call from pending and reports whether it was there;
// when it was not, a result is in call.ch or about to be.
func (c *tcpConn) unregister(id uint16, call *tcpCall) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] != call {
		return false
	}
	delete(c.pending, id)
	c.idledLocked()
	return true
}

// abandon drops a call whose query may not have been sent.
func (c *tcpConn) abandon(id uint16, call *tcpCall) {
	if !c.unregister(id, call) {
		if res := <-call.ch; res.buf != nil {
			putMsgBuf(res.buf)
		}
	}
	tcpCallPool.Put(call)
}

// write sends one frame. A failed write may have sent part of it, which
// leaves the stream unusable, so it ends the connection. The write is
// bounded by the ctx deadline but not interrupted by cancellation.
func (c *tcpConn) write(ctx context.Context, frame []byte) (Class, error) {
	select {
	case c.wlock <- struct{}{}:
	case <-ctx.Done():
		return ctxClass(ctx), fmt.Errorf("wait to send query: %w", ctx.Err())
	case <-c.dead:
		return c.err.class, fmt.Errorf("send query: %w", c.err.err) // err is set before dead closes
	}
	defer func() { <-c.wlock }()
	dl, _ := ctx.Deadline()
	c.nc.SetWriteDeadline(dl)
	_, err := c.nc.Write(frame)
	if err == nil {
		return ClassOK, nil
	}
	err = fmt.Errorf("send query: %w", err)
	ours := &connError{ClassNetwork, err}
	c.mu.Lock()
	first := c.failLocked(ours)
	c.mu.Unlock()
	switch {
	case first != ours:
		return first.class, fmt.Errorf("send query: %w", first.err)
	case isTimeout(err) || ctx.Err() != nil:
		return ctxClass(ctx), err
	}
	return ClassNetwork, err
}

// readLoop reads length-prefixed replies (RFC 1035 §4.2.2) and hands each
// to the call waiting for its ID; replies nobody waits for (late answers
// to abandoned queries) are dropped. It ends when the connection does.
func (c *tcpConn) readLoop() {
	defer c.t.forget(c)
	br := bufio.NewReader(c.nc)
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(&connError{ClassNetwork, fmt.Errorf("read reply: %w", err)})
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		bp := getMsgBuf()
		if _, err := io.ReadFull(br, (*bp)[:n]); err != nil {
			putMsgBuf(bp)
			c.fail(&connError{ClassNetwork, fmt.Errorf("read reply: %w", err)})
			return
		}
		if !c.deliver(bp, n) {
			putMsgBuf(bp)
		}
	}
}

func (c *tcpConn) deliver(bp *[]byte, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames++
	if n < 2 {
		return false
	}
	id := binary.BigEndian.Uint16(*bp)
	call := c.pending[id]
	if call == nil {
		return false
	}
	delete(c.pending, id)
	c.idledLocked() // before waking the caller, so idleSince is not later than its return
	call.ch <- tcpResult{buf: bp, n: n}
	return true
}

// idledLocked runs when a call leaves pending: the last one out starts the
// idle clock, or closes a retired connection.
func (c *tcpConn) idledLocked() {
	if len(c.pending) > 0 || c.err != nil {
		return
	}
	if c.retired {
		c.failLocked(errRetired)
		return
	}
	c.idleSince = c.t.now()
	c.idleTimer.Reset(c.t.idle)
}

// idleCheck runs from the idle timer. The timer may fire late or after a
// new query came and went, so it checks again by the configured clock.
func (c *tcpConn) idleCheck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && len(c.pending) == 0 && c.t.now().Sub(c.idleSince) >= c.t.idle {
		c.failLocked(errIdle)
	}
}

// retireIfSilent retires the connection when nothing was read on it since
// a query registered with frames was sent: a server or path that stopped
// answering should not keep taking new queries until TCP gives up on it.
// Queries already pending may still get their replies.
func (c *tcpConn) retireIfSilent(frames uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.frames != frames {
		return
	}
	c.retired = true
	if len(c.pending) == 0 {
		c.failLocked(errRetired)
	}
}

func (c *tcpConn) fail(r *connError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLocked(r)
}

// failLocked ends the connection for reason r unless it has ended already,
// fails every pending call with the reason, and returns the reason that
// stands.
func (c *tcpConn) failLocked(r *connError) *connError {
	if c.err != nil {
		return c.err
	}
	c.err = r
	for _, call := range c.pending {
		call.ch <- tcpResult{err: r}
	}
	c.pending = nil
	close(c.dead)
	c.idleTimer.Stop()
	c.nc.Close()
	return r
}
