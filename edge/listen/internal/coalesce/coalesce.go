// Package coalesce writes what the goroutines answering the queries of
// one stream connection (TCP, DoT, DoH over HTTP/2) queue, in as few
// writes as it can: a goroutine that queues something while no write is
// in progress becomes the flusher and writes out everything queued, again
// until nothing is, while the others only queue. Replies ready together
// so leave in one write(2) and, over TLS, one record.
//
// UDP replies are coalesced too, but into one sendmmsg of separate
// datagrams, each with its own address: a batch of messages rather than
// a stream of bytes, so the UDP listener keeps its own flusher.
package coalesce

import (
	"net"
	"sync"
	"time"
)

// maxKept is the largest buffer kept for reuse.
const maxKept = 256 << 10

var pool = sync.Pool{New: func() any { return new([]byte) }}

// Writer is the write side of one connection. Its owner's mutex (Init)
// guards it: methods named ...Locked are called with it held, Flush
// without. The zero Writer is not usable; Init it first.
type Writer struct {
	mu      *sync.Mutex
	conn    net.Conn
	timeout func() time.Duration
	lazy    bool
	onError func(error)

	queued     *[]byte // pooled; nil when nothing is queued
	flushing   bool    // a flusher holds the role
	broken     bool    // nothing more is written
	closeAfter bool    // close conn once what is queued is written
	idle       sync.Cond
	deadline   time.Time // write deadline set; only the flusher touches it
}

// Init sets w up to write to conn under the owner's mutex mu. timeout
// gives the write timeout, set as the write deadline before each write;
// when lazy, only once less than three quarters of it is left, which
// saves a timer update per write at the cost of a deadline up to a
// quarter early. onError, when not nil, learns why a write failed; the
// connection is closed then.
func (w *Writer) Init(mu *sync.Mutex, conn net.Conn, timeout func() time.Duration, lazy bool, onError func(error)) {
	*w = Writer{mu: mu, conn: conn, timeout: timeout, lazy: lazy, onError: onError}
	w.idle.L = mu
}

// Write queues p. It never fails, and writes nothing once the
// connection is broken.
func (w *Writer) Write(p []byte) (int, error) {
	if w.broken {
		return len(p), nil
	}
	if w.queued == nil {
		w.queued = pool.Get().(*[]byte)
		*w.queued = (*w.queued)[:0]
	}
	*w.queued = append(*w.queued, p...)
	return len(p), nil
}

// QueuedLocked returns the number of bytes queued and not yet taken by
// the flusher.
func (w *Writer) QueuedLocked() int {
	if w.queued == nil {
		return 0
	}
	return len(*w.queued)
}

// BrokenLocked reports whether a write failed or BreakLocked was called:
// nothing more is written.
func (w *Writer) BrokenLocked() bool { return w.broken }

// WaitLocked waits until the flusher has taken what is queued, or has
// given up the role; it releases the mutex meanwhile.
func (w *Writer) WaitLocked() { w.idle.Wait() }

// CloseAfterLocked makes the flusher close the connection once it has
// written out what is queued; call StartLocked after it.
func (w *Writer) CloseAfterLocked() { w.closeAfter = true }

// StartLocked reports whether the caller is to call Flush: there is
// something to write (or the connection to close) and no flusher. The
// caller then holds the flusher role until Flush returns.
func (w *Writer) StartLocked() bool {
	if w.flushing || w.broken || w.QueuedLocked() == 0 && !w.closeAfter {
		return false
	}
	w.flushing = true
	return true
}

// Flush writes out what is queued until nothing is, then gives up the
// flusher role, which the caller holds (StartLocked). A failed write
// breaks the writer and closes the connection.
func (w *Writer) Flush() {
	w.mu.Lock()
	for w.QueuedLocked() > 0 && !w.broken {
		out := w.queued
		w.queued = nil
		w.idle.Broadcast()
		w.mu.Unlock()
		timeout := w.timeout()
		if now := time.Now(); !w.lazy || w.deadline.Sub(now) < timeout*3/4 {
			w.deadline = now.Add(timeout)
			w.conn.SetWriteDeadline(w.deadline)
		}
		_, err := w.conn.Write(*out)
		put(out)
		w.mu.Lock()
		if err != nil {
			w.broken = true
			if w.onError != nil {
				w.onError(err)
			}
			w.conn.Close()
		}
	}
	closeNow := w.closeAfter && !w.broken
	if w.queued != nil && w.broken {
		put(w.queued) // never to be sent
		w.queued = nil
	}
	w.flushing = false
	w.idle.Broadcast()
	w.mu.Unlock()
	if closeNow {
		w.conn.Close()
	}
}

// BreakLocked waits for the flusher to finish, breaks the writer and
// returns what was queued and not written (nil when it was broken
// already), which the caller writes itself and then gives back with
// Release.
func (w *Writer) BreakLocked() *[]byte {
	for w.flushing {
		w.idle.Wait()
	}
	out := w.queued
	w.queued = nil
	if w.broken && out != nil {
		put(out)
		out = nil
	}
	w.broken = true
	return out
}

// Release gives back a buffer BreakLocked returned.
func Release(b *[]byte) {
	if b != nil {
		put(b)
	}
}

func put(b *[]byte) {
	if cap(*b) > maxKept {
		return
	}
	*b = (*b)[:0]
	pool.Put(b)
}
