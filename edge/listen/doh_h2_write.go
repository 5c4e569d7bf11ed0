package listen

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The write side of dohH2Conn. Frames are queued on c.out under c.mu, by
// the reader (control frames) and by workers (replies); a goroutine that
// queues something while no write is in progress becomes the flusher: it
// writes out whatever is queued, again until nothing is, while the others
// only queue. A worker lets the other runnable goroutines go first
// (runtime.Gosched) before it writes, so that the replies computed
// together leave in one write, the way an event loop flushes at the end
// of its iteration; the reader asks for a flush only once it has handled
// every frame it has buffered.

// serve processes the request of s and queues the reply. It runs on a
// worker.
func (s *dohH2Stream) serve() {
	c := s.c
	var w dohResponse
	defer func() {
		if r := recover(); r != nil {
			c.l.m.panicked()
			c.l.log.Error("panic serving http/2 request", "panic", r, "client", c.client.String(), "stack", string(debug.Stack()))
			w.release()
			w = dohResponse{abort: true}
			c.respond(s, &w)
		}
	}()
	if s.body != nil {
		s.bodyR.Reset(s.body)
		s.req.body = &s.bodyR
	}
	c.l.process(&s.req, &w)
	if s.body != nil {
		putBodyBuf(s.body)
		s.body, s.req.body = nil, nil
	}
	c.respond(s, &w)
}

// respond queues the reply w to s, and writes it out unless a write is in
// progress. It takes over w's buffer.
func (c *dohH2Conn) respond(s *dohH2Stream, w *dohResponse) {
	c.mu.Lock()
	c.running--
	s.working = false
	switch {
	case c.dead || s.reset:
		w.release()
		c.closeStreamLocked(s)
	case w.abort:
		w.release()
		c.rstLocked(s.id, http2.ErrCodeInternal)
		c.resetStreamLocked(s)
	default:
		c.queueLocked(s, w)
	}
	flush := c.startFlushLocked()
	others := c.running > 0
	c.mu.Unlock()
	if flush {
		if others {
			runtime.Gosched() // let the other replies join this write
		}
		c.flush()
	}
}

// queueLocked queues the HEADERS of w and as much of its body as the flow
// control windows let through; the rest waits in s for WINDOW_UPDATEs.
// It takes over w's buffer.
func (c *dohH2Conn) queueLocked(s *dohH2Stream, w *dohResponse) {
	c.writeHeadersLocked(s.id, w)
	if len(w.body) == 0 {
		w.release()
		c.answeredLocked(s)
		return
	}
	s.pend, s.pendBuf = w.body, w.buf
	w.buf, w.body = nil, nil
	if c.sendDataLocked(s) {
		c.answeredLocked(s)
		return
	}
	c.blocked = append(c.blocked, s)
}

// sendDataLocked queues DATA frames of s.pend while the windows allow,
// and reports whether all of it is queued (the last with END_STREAM).
func (c *dohH2Conn) sendDataLocked(s *dohH2Stream) bool {
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
		c.out = append(c.out, byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameData), flags,
			byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
		c.out = append(c.out, p...)
	}
	if s.pendBuf != nil {
		putBuf(s.pendBuf)
		s.pendBuf = nil
	}
	s.pend = nil
	return true
}

// resumeLocked sends what the blocked streams can now send.
func (c *dohH2Conn) resumeLocked() {
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
func (c *dohH2Conn) answeredLocked(s *dohH2Stream) {
	if s.remoteOpen {
		c.rstLocked(s.id, http2.ErrCodeNo)
		s.reset = true
	}
	c.closeStreamLocked(s)
}

// resetStreamLocked ends s after a RST_STREAM was queued for it; a worker
// still at work on it finds it reset.
func (c *dohH2Conn) resetStreamLocked(s *dohH2Stream) {
	s.reset = true
	if !s.working {
		c.closeStreamLocked(s)
	}
}

// closeStreamLocked forgets s, and once the last stream after a GOAWAY
// is gone, closes the connection.
func (c *dohH2Conn) closeStreamLocked(s *dohH2Stream) {
	if c.streams[s.id] != s {
		return
	}
	delete(c.streams, s.id)
	if s.remoteOpen {
		s.remoteOpen = false
		c.receiving--
	}
	if s.pendBuf != nil {
		putBuf(s.pendBuf)
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
		c.closeNow = true
	}
}

func (c *dohH2Conn) rstLocked(id uint32, code http2.ErrCode) {
	if !c.dead {
		c.fr.WriteRSTStream(id, code)
	}
}

// writeHeadersLocked queues the HEADERS frame of w on stream id, with
// END_STREAM when w has no body.
func (c *dohH2Conn) writeHeadersLocked(id uint32, w *dohResponse) {
	l := c.l
	c.hbuf.Reset()
	e := c.henc
	status := "200"
	if w.status != http.StatusOK {
		status = strconv.Itoa(w.status)
	}
	e.WriteField(hpack.HeaderField{Name: ":status", Value: status})
	e.WriteField(hpack.HeaderField{Name: "access-control-allow-origin", Value: "*"})
	if w.altSvc {
		e.WriteField(hpack.HeaderField{Name: "alt-svc", Value: l.hdr.altSvc[0]})
	}
	switch w.kind {
	case dohRespPreflight:
		e.WriteField(hpack.HeaderField{Name: "access-control-allow-methods", Value: l.hdr.allow[0]})
		e.WriteField(hpack.HeaderField{Name: "access-control-allow-headers", Value: l.hdr.allowHdrs[0]})
		e.WriteField(hpack.HeaderField{Name: "access-control-max-age", Value: l.hdr.maxAge[0]})
		e.WriteField(hpack.HeaderField{Name: "allow", Value: l.hdr.allow[0]})
	case dohRespText:
		e.WriteField(hpack.HeaderField{Name: "content-type", Value: l.hdr.text[0]})
		e.WriteField(hpack.HeaderField{Name: "x-content-type-options", Value: "nosniff"})
		e.WriteField(hpack.HeaderField{Name: "cache-control", Value: "no-store"})
		if w.allow {
			e.WriteField(hpack.HeaderField{Name: "allow", Value: l.hdr.allow[0]})
		}
	default:
		ct := w.ctype
		if w.kind == dohRespDNS {
			ct = dnsMessageType
		}
		e.WriteField(hpack.HeaderField{Name: "content-type", Value: ct})
		e.WriteField(hpack.HeaderField{Name: "cache-control", Value: w.cache})
	}
	if w.kind != dohRespPreflight {
		e.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(w.body))})
	}
	e.WriteField(hpack.HeaderField{Name: "date", Value: dohDate()})
	c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: c.hbuf.Bytes(),
		EndStream:     len(w.body) == 0,
		EndHeaders:    true,
	})
}

// dohDateCache holds the HTTP Date of the current second.
var dohDateCache atomic.Pointer[dohDateValue]

type dohDateValue struct {
	sec int64
	s   string
}

// dohDate returns the current time as an HTTP Date (RFC 9110 §5.6.7),
// formatted once a second.
func dohDate() string {
	now := time.Now()
	if d := dohDateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dohDateValue{now.Unix(), now.UTC().Format(http.TimeFormat)}
	dohDateCache.Store(d)
	return d.s
}

// startFlushLocked reports whether the caller is to write out what is
// queued: there is something to write (or the connection to close) and
// no one else is writing. It then holds the flusher role until flush
// returns.
func (c *dohH2Conn) startFlushLocked() bool {
	if c.flushing || c.dead || len(c.out) == 0 && !c.closeNow {
		return false
	}
	c.flushing = true
	return true
}

// kickLocked writes out what is queued in a goroutine of its own, unless
// a flusher is at it: the reader never writes, so a client that does not
// read cannot stop it reading.
func (c *dohH2Conn) kickLocked() {
	if c.startFlushLocked() {
		c.flushers.Go(c.flush)
	}
}

// flush writes out the queued frames until none are left; the caller
// holds the flusher role, which flush gives up. A failed write closes the
// connection.
func (c *dohH2Conn) flush() {
	for {
		c.mu.Lock()
		if len(c.out) == 0 || c.dead {
			closeNow := c.closeNow && !c.dead
			c.flushing = false
			c.flushed.Broadcast()
			c.mu.Unlock()
			if closeNow {
				c.nc.Close() // the reader sees it and ends the connection
			}
			return
		}
		data := c.out
		c.out, c.spare = c.spare[:0], data
		c.mu.Unlock()
		if now := time.Now(); c.wdeadline.Sub(now) < c.l.cfg.WriteTimeout*3/4 {
			c.wdeadline = now.Add(c.l.cfg.WriteTimeout)
			c.nc.SetWriteDeadline(c.wdeadline)
		}
		if _, err := c.nc.Write(data); err != nil {
			c.l.log.Debug("http/2 write", "client", c.client.String(), "err", err)
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
			c.nc.Close()
			continue
		}
		if cap(data) > 256<<10 {
			c.mu.Lock()
			c.spare = nil
			c.mu.Unlock()
		}
	}
}

// stop ends the connection: with a GOAWAY of code when goaway, written
// within a second, then closes it. Workers still at work on its streams
// find it dead and drop their replies.
func (c *dohH2Conn) stop(goaway bool, code http2.ErrCode) {
	c.mu.Lock()
	for c.flushing {
		c.flushed.Wait()
	}
	if goaway && !c.dead {
		c.fr.WriteGoAway(c.maxID, code, nil)
	}
	var data []byte
	if !c.dead {
		data = c.out
	}
	c.dead = true
	c.out = nil
	for _, s := range c.streams {
		if !s.working {
			c.closeStreamLocked(s)
		}
	}
	c.blocked = nil
	c.mu.Unlock()
	if len(data) > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(min(time.Second, c.l.cfg.WriteTimeout)))
		c.nc.Write(data)
	}
	c.nc.Close()
	c.flushers.Wait()
}

// goAway tells the client that no new stream will be served (RFC 9113
// §6.8), and closes the connection once the streams it has are answered.
// It is safe to call from any goroutine, more than once.
func (c *dohH2Conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goingAway || c.dead {
		return
	}
	c.goingAway = true
	c.fr.WriteGoAway(c.maxID, http2.ErrCodeNo, nil)
	if len(c.streams) == 0 {
		c.closeNow = true
	}
	c.kickLocked()
}
