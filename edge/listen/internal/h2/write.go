package h2

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/dnsedge/dnsedge/edge/listen/internal/coalesce"
)

// The write side of conn. Frames are queued on c.w (internal/coalesce)
// under c.mu, by the reader (control frames) and by handlers (replies); a
// goroutine that queues something while no write is in progress becomes
// the flusher: it writes out whatever is queued, again until nothing is,
// while the others only queue. A handler lets the other runnable
// goroutines go first (runtime.Gosched) before it writes, so that the
// replies computed together leave in one write, the way an event loop
// flushes at the end of its iteration; the reader asks for a flush only
// once it has handled every frame it has buffered.

// Respond queues the reply r to the request of s, and writes it out
// unless a write is in progress. It takes over r.Buf; Req.Body is not
// to be used afterwards. If the other requests of the connection are
// being answered, it lets them go first (runtime.Gosched), so that their
// replies join this write.
func (s *Stream) Respond(r *Response) {
	s.c.respond(s, r, false)
}

// Reset sends nothing but RST_STREAM (INTERNAL_ERROR) for s, the closest
// HTTP/2 has to dropping a request. Req.Body is not to be used
// afterwards.
func (s *Stream) Reset() {
	s.c.respond(s, nil, true)
}

// respond answers s with r, or with a reset when abort.
func (c *conn) respond(s *Stream, r *Response, abort bool) {
	if s.body != nil {
		putBodyBuf(s.body)
		s.body, s.Req.Body = nil, nil
	}
	c.mu.Lock()
	c.running--
	s.working = false
	switch {
	case c.w.BrokenLocked() || s.reset:
		if r != nil {
			c.putBuf(r.Buf)
		}
		c.closeStreamLocked(s)
	case abort:
		c.rstLocked(s.id, http2.ErrCodeInternal)
		c.resetStreamLocked(s)
	default:
		c.queueLocked(s, r)
	}
	flush := c.w.StartLocked()
	others := c.running > 0
	c.mu.Unlock()
	if flush {
		if others {
			runtime.Gosched() // let the other replies join this write
		}
		c.w.Flush()
	}
}

func (c *conn) putBuf(b *[]byte) {
	if b != nil && c.srv.cfg.PutBuf != nil {
		c.srv.cfg.PutBuf(b)
	}
}

// queueLocked queues the HEADERS of r and as much of its body as the flow
// control windows let through; the rest waits in s for WINDOW_UPDATEs.
// It takes over r.Buf.
func (c *conn) queueLocked(s *Stream, r *Response) {
	c.writeHeadersLocked(s.id, r)
	if len(r.Body) == 0 {
		c.putBuf(r.Buf)
		c.answeredLocked(s)
		return
	}
	s.pend, s.pendBuf = r.Body, r.Buf
	if c.sendDataLocked(s) {
		c.answeredLocked(s)
		return
	}
	c.blocked = append(c.blocked, s)
}

// sendDataLocked queues DATA frames of s.pend while the windows allow,
// and reports whether all of it is queued (the last with END_STREAM).
func (c *conn) sendDataLocked(s *Stream) bool {
	for len(s.pend) > 0 {
		n := min(int64(len(s.pend)), int64(c.peerFrame), c.sendConn, s.sendWin)
		if n <= 0 {
			return false
		}
		p := s.pend[:n]
		s.pend = s.pend[n:]
		c.sendConn -= n
		s.sendWin -= n
		var flags byte
		if len(s.pend) == 0 {
			flags = byte(http2.FlagDataEndStream)
		}
		id := s.id
		c.w.Write([]byte{byte(n >> 16), byte(n >> 8), byte(n), byte(http2.FrameData), flags,
			byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)})
		c.w.Write(p)
	}
	c.putBuf(s.pendBuf)
	s.pendBuf = nil
	s.pend = nil
	return true
}

// resumeLocked sends what the blocked streams can now send.
func (c *conn) resumeLocked() {
	kept := c.blocked[:0]
	for _, s := range c.blocked {
		if c.sendConn > 0 && c.sendDataLocked(s) {
			c.answeredLocked(s)
			continue
		}
		kept = append(kept, s)
	}
	clear(c.blocked[len(kept):])
	c.blocked = kept
}

// answeredLocked ends s once its reply is queued whole: RFC 9113 §8.1
// lets a server that answered before the request ended reset the rest of
// it with NO_ERROR.
func (c *conn) answeredLocked(s *Stream) {
	if s.remoteOpen {
		c.rstLocked(s.id, http2.ErrCodeNo)
		s.reset = true
	}
	c.closeStreamLocked(s)
}

// resetStreamLocked ends s after a RST_STREAM was queued for it; a worker
// still at work on it finds it reset.
func (c *conn) resetStreamLocked(s *Stream) {
	s.reset = true
	if !s.working {
		c.closeStreamLocked(s)
	}
}

// closeStreamLocked forgets s, and once the last stream after a GOAWAY
// is gone, closes the connection.
func (c *conn) closeStreamLocked(s *Stream) {
	if c.streams[s.id] != s {
		return
	}
	delete(c.streams, s.id)
	if s.remoteOpen {
		s.remoteOpen = false
		c.receiving--
	}
	if s.pendBuf != nil {
		c.putBuf(s.pendBuf)
		s.pendBuf = nil
		for i, b := range c.blocked {
			if b == s {
				c.blocked = append(c.blocked[:i], c.blocked[i+1:]...)
				break
			}
		}
	}
	s.pend = nil
	if !s.dispatched && s.body != nil {
		putBodyBuf(s.body)
		s.body = nil
	}
	if c.goingAway && len(c.streams) == 0 {
		c.w.CloseAfterLocked()
	}
}

func (c *conn) rstLocked(id uint32, code http2.ErrCode) {
	if !c.w.BrokenLocked() {
		c.fr.WriteRSTStream(id, code)
	}
}

// writeHeadersLocked queues the HEADERS frame of r on stream id, with
// END_STREAM when r has no body.
func (c *conn) writeHeadersLocked(id uint32, r *Response) {
	e := &c.henc
	b := e.begin(c.hbuf[:0])
	b = e.status(b, r.Status)
	for _, f := range r.header[:r.n] {
		b = e.field(b, f.name, f.value, f.shared)
	}
	b = e.field(b, "date", httpDate(), false)
	c.hbuf = b
	c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: b,
		EndStream:     len(r.Body) == 0,
		EndHeaders:    true,
	})
}

// dateCache holds the HTTP Date of the current second.
var dateCache atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	s   string
}

// httpDate returns the current time as an HTTP Date (RFC 9110 §5.6.7),
// formatted once a second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateValue{now.Unix(), now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

// kickLocked writes out what is queued in a goroutine of its own, unless
// a flusher is at it: the reader never writes, so a client that does not
// read cannot stop it reading.
func (c *conn) kickLocked() {
	if c.w.StartLocked() {
		c.flushers.Go(c.w.Flush)
	}
}

// stop ends the connection: with a GOAWAY of code when goaway, written
// within a second, then closes it. Workers still at work on its streams
// find it broken and drop their replies.
func (c *conn) stop(goaway bool, code http2.ErrCode) {
	c.mu.Lock()
	if goaway {
		c.fr.WriteGoAway(c.maxID, code, nil) // nothing when broken
	}
	data := c.w.BreakLocked()
	for _, s := range c.streams {
		if !s.working {
			c.closeStreamLocked(s)
		}
	}
	c.blocked = nil
	c.mu.Unlock()
	if data != nil && len(*data) > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(min(time.Second, c.srv.lim().WriteTimeout)))
		c.nc.Write(*data)
	}
	coalesce.Release(data)
	c.nc.Close()
	c.flushers.Wait()
}

// goAwayGrace is how long a graceful shutdown lets streams the client
// sent before it saw the first GOAWAY arrive, before the final one.
const goAwayGrace = time.Second

// announceGoAway starts a graceful shutdown (RFC 9113 §6.8): a GOAWAY
// with the largest stream id tells the client to open no more streams
// while those already on their way are still served; goAwayGrace later
// goAway sends the final GOAWAY. A client that opened a stream after the
// final GOAWAY's id knows it was not processed and retries it elsewhere.
// It is safe to call from any goroutine, more than once.
func (c *conn) announceGoAway() {
	c.mu.Lock()
	if c.goingAway || c.announced || c.w.BrokenLocked() {
		c.mu.Unlock()
		return
	}
	c.announced = true
	c.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
	c.kickLocked()
	c.mu.Unlock()
	time.AfterFunc(goAwayGrace, c.goAway)
}

// goAway tells the client that no new stream will be served (RFC 9113
// §6.8), and closes the connection once the streams it has are answered.
// It is safe to call from any goroutine, more than once.
func (c *conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goingAway || c.w.BrokenLocked() {
		return
	}
	c.goingAway = true
	c.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	if len(c.streams) == 0 {
		c.w.CloseAfterLocked()
	}
	c.kickLocked()
}
