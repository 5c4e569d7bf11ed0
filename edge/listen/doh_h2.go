package listen

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 server of DoH connections that negotiated "h2" over TLS
// (RFC 9113), written for DoH rather than general HTTP: one goroutine
// reads and checks the frames of a connection and hands each complete
// request to a worker (workers.go); replies are queued on a
// per-connection buffer and whoever finds no write in progress writes out
// everything queued, so replies ready together leave in one TLS record
// and one write(2) (doh_h2_write.go). net/http's HTTP/2 server starts a
// goroutine per stream and one per frame written, and writes each reply
// on its own.

const (
	// dohH2MaxFrame is the SETTINGS_MAX_FRAME_SIZE we keep: the default.
	dohH2MaxFrame = 16384
	// dohH2StreamWindow is our SETTINGS_INITIAL_WINDOW_SIZE: a whole 64 KiB
	// POST body and then some, so that a body too long to be a DNS message
	// shows itself before the window runs out. Stream windows are never
	// replenished: no request may need more.
	dohH2StreamWindow = 1 << 17
	// dohH2ConnWindow is the connection receive window, replenished once
	// half of it is used.
	dohH2ConnWindow = 1 << 20
	// dohH2ReadBuf is the read buffer of a connection.
	dohH2ReadBuf = 16 << 10
)

// errDoHIdle ends a connection idle for Config.IdleTimeout.
var errDoHIdle = errors.New("idle connection")

// dohH2Conn is one HTTP/2 connection. The reader goroutine (serve) owns
// the Framer's read side and the fields marked reader-owned; everything
// else is under mu.
type dohH2Conn struct {
	l      *DoH
	nc     net.Conn // the TLS connection
	tls    *tls.ConnectionState
	client netip.AddrPort
	br     *bufio.Reader
	fr     *http2.Framer

	// Reader-owned.
	recvConn int32 // connection receive window left

	mu        sync.Mutex
	flushed   sync.Cond // signalled when flushing turns false
	streams   map[uint32]*dohH2Stream
	maxID     uint32 // the highest client stream id seen
	running   int    // streams whose request is being processed
	receiving int    // streams whose request is still arriving
	out       []byte // frames queued for writing
	spare     []byte // the buffer being written, reused as out
	flushing  bool   // a goroutine is writing out
	dead      bool   // nothing more is written: the connection is closing
	goingAway bool   // GOAWAY sent: close once the streams are done
	closeNow  bool   // close after writing what is queued
	henc      *hpack.Encoder
	hbuf      bytes.Buffer
	sendConn  int64 // connection send window
	peerWin   int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame int   // the peer's SETTINGS_MAX_FRAME_SIZE
	blocked   []*dohH2Stream
	wdeadline time.Time // write deadline set; only the flusher touches it
	flushers  sync.WaitGroup
}

// dohH2Stream is one request and its reply.
type dohH2Stream struct {
	c   *dohH2Conn
	id  uint32
	req dohRequest
	// body is the POST body so far, until the request is dispatched; then
	// the worker's.
	body  []byte
	bodyR bytes.Reader

	// Under c.mu.
	remoteOpen bool  // the request has not ended (no END_STREAM yet)
	dispatched bool  // handed to a worker
	working    bool  // the worker has not answered yet
	reset      bool  // RST_STREAM sent or received: write nothing more
	recvWin    int64 // stream receive window left
	sendWin    int64 // stream send window
	received   int64 // body bytes received
	pend       []byte
	pendBuf    *[]byte
}

// serveH2 serves the HTTP/2 connection tc, whose TLS handshake is done,
// until it ends; raw is the admitted TCP connection under it.
func (l *DoH) serveH2(tc *tls.Conn, raw *dohConn) {
	cs := tc.ConnectionState()
	c := &dohH2Conn{
		l:         l,
		nc:        tc,
		tls:       &cs,
		client:    unmap(raw.RemoteAddr().(*net.TCPAddr).AddrPort()),
		br:        bufio.NewReaderSize(tc, dohH2ReadBuf),
		recvConn:  dohH2ConnWindow,
		streams:   make(map[uint32]*dohH2Stream),
		sendConn:  65535,
		peerWin:   65535,
		peerFrame: 16384,
	}
	c.flushed.L = &c.mu
	c.fr = http2.NewFramer(dohH2Out{c}, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = dohMaxHeaderBytes
	c.fr.SetMaxReadFrameSize(dohH2MaxFrame)
	c.fr.SetReuseFrames()
	c.henc = hpack.NewEncoder(&c.hbuf)
	if !l.trackH2(c, true) {
		tc.Close()
		return
	}
	defer l.trackH2(c, false)
	err := c.run()
	var code http2.ErrCode
	var ce http2.ConnectionError
	goaway := true
	switch {
	case errors.As(err, &ce):
		code = http2.ErrCode(ce)
	case errors.Is(err, http2.ErrFrameTooLarge):
		code = http2.ErrCodeFrameSize
	case errors.Is(err, errDoHIdle):
		code = http2.ErrCodeNo
	default:
		goaway = false
		if err != io.EOF && !errors.Is(err, net.ErrClosed) {
			l.log.Debug("http/2 connection", "client", c.client.String(), "err", err)
		}
	}
	if goaway && code != http2.ErrCodeNo {
		l.log.Debug("http/2 connection error", "client", c.client.String(), "code", code.String(), "err", err)
	}
	c.stop(goaway, code)
}

// dohH2Out is the Framer's writer: it queues frames on the connection's
// buffer, under c.mu.
type dohH2Out struct{ c *dohH2Conn }

func (o dohH2Out) Write(p []byte) (int, error) {
	o.c.out = append(o.c.out, p...)
	return len(p), nil
}

// run reads frames until the connection ends, and returns why.
func (c *dohH2Conn) run() error {
	cfg := &c.l.cfg
	c.mu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(min(cfg.MaxQueriesPerConn, 1<<31-1))},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: dohH2StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: dohMaxHeaderBytes},
	)
	c.fr.WriteWindowUpdate(0, dohH2ConnWindow-65535)
	c.kickLocked()
	c.mu.Unlock()

	c.nc.SetReadDeadline(time.Now().Add(cfg.ReadTimeout))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	first := true
	for {
		if err := c.waitFrame(); err != nil {
			return err
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.mu.Lock()
				if se.StreamID%2 == 1 && se.StreamID > c.maxID {
					c.maxID = se.StreamID // a HEADERS block, decoded
				}
				c.rstLocked(se.StreamID, se.Code)
				c.mu.Unlock()
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return ce
			}
			return err
		}
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9113 §3.4
			}
			first = false
		}
		if err := c.handle(f); err != nil {
			return err
		}
		if c.br.Buffered() == 0 {
			// Whatever the frames read called for goes out now.
			c.mu.Lock()
			c.kickLocked()
			c.mu.Unlock()
		}
	}
}

// waitFrame waits until a frame has begun to arrive, for as long as the
// connection may stay idle, then sets the deadline by which the frame (a
// whole header block for HEADERS) must have arrived: Config.ReadTimeout.
// A frame already buffered whole needs no deadline.
func (c *dohH2Conn) waitFrame() error {
	cfg := &c.l.cfg
	for c.br.Buffered() == 0 {
		c.mu.Lock()
		running, receiving := c.running, c.receiving
		c.mu.Unlock()
		wait := cfg.IdleTimeout
		if receiving > 0 {
			wait = min(wait, cfg.ReadTimeout)
		}
		c.nc.SetReadDeadline(time.Now().Add(wait))
		_, err := c.br.Peek(1)
		if err == nil {
			break
		}
		if !isNetTimeout(err) {
			return err
		}
		c.mu.Lock()
		running, receiving = c.running, c.receiving
		c.mu.Unlock()
		if receiving > 0 {
			return errors.New("request body not sent within the read timeout")
		}
		if running == 0 {
			return errDoHIdle
		}
		// Queries are being answered: the connection is not idle.
	}
	if n := c.br.Buffered(); n >= 9 {
		h, _ := c.br.Peek(9)
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		whole := n >= 9+length && !(http2.FrameType(h[3]) == http2.FrameHeaders && h[4]&byte(http2.FlagHeadersEndHeaders) == 0)
		if whole || length > dohH2MaxFrame {
			return nil
		}
	}
	c.nc.SetReadDeadline(time.Now().Add(cfg.ReadTimeout))
	return nil
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle acts on one frame. An error ends the connection; an
// http2.ErrCode one with that GOAWAY.
func (c *dohH2Conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			c.fr.WritePing(true, f.Data)
			c.mu.Unlock()
		}
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream (RFC 9113 §6.4)
		}
		if s := c.streams[f.StreamID]; s != nil {
			s.reset = true
			if !s.working {
				c.closeStreamLocked(s)
			}
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9113 §8.4
	case *http2.GoAwayFrame, *http2.PriorityFrame, *http2.UnknownFrame:
		// The client opens no more streams: it closes the connection
		// once its streams are answered. Priorities are ignored.
	}
	return nil
}

// onHeaders starts a request, or ends one with trailers.
func (c *dohH2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9113 §5.1.1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id <= c.maxID {
		s := c.streams[id]
		if s == nil || !s.remoteOpen {
			if s == nil && c.goingAway {
				return nil // refused by GOAWAY
			}
			return http2.ConnectionError(http2.ErrCodeStreamClosed) // RFC 9113 §5.1
		}
		if !f.StreamEnded() {
			c.rstLocked(id, http2.ErrCodeProtocol) // trailers end the stream
			return nil
		}
		c.endRequestLocked(s)
		return nil
	}
	c.maxID = id
	if c.goingAway || c.dead {
		return nil // beyond the GOAWAY's last stream: ignored
	}
	if len(c.streams) >= c.l.cfg.MaxQueriesPerConn {
		c.rstLocked(id, http2.ErrCodeRefusedStream)
		return nil
	}
	s := &dohH2Stream{
		c:          c,
		id:         id,
		remoteOpen: !f.StreamEnded(),
		recvWin:    dohH2StreamWindow,
		sendWin:    c.peerWin,
	}
	r := &s.req
	r.length, r.client, r.tls, r.proto = -1, c.client, c.tls, 2
	var scheme string
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			r.method = hf.Value
		case ":path":
			r.path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority", ":protocol":
		case "content-type":
			if r.contentType == "" {
				r.contentType = hf.Value
			}
		case "accept":
			if r.accept == "" {
				r.accept = hf.Value
			}
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || r.length >= 0 && int64(n) != r.length {
				c.rstLocked(id, http2.ErrCodeProtocol)
				return nil
			}
			r.length = int64(n)
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			c.rstLocked(id, http2.ErrCodeProtocol) // RFC 9113 §8.2.2
			return nil
		case "te":
			if hf.Value != "trailers" {
				c.rstLocked(id, http2.ErrCodeProtocol)
				return nil
			}
		}
	}
	if r.method == "" || r.method != http.MethodConnect && (scheme == "" || r.path == "") {
		c.rstLocked(id, http2.ErrCodeProtocol) // RFC 9113 §8.3.1
		return nil
	}
	r.path, r.rawQuery = dohSplitPath(r.path)
	r.received = time.Now()
	c.streams[id] = s
	if s.remoteOpen {
		c.receiving++
	}
	if f.Truncated {
		// The header list is over MAX_HEADER_LIST_SIZE.
		s.dispatched = true
		var w dohResponse
		w.altSvc = c.l.hdr.altSvc != nil
		w.fail(&dohError{http.StatusRequestHeaderFieldsTooLarge, "request headers too large"})
		c.queueLocked(s, &w)
		return nil
	}
	if s.remoteOpen && r.method == http.MethodPost && r.length <= dns.MaxMsgSize {
		return nil // wait for the body
	}
	// Nothing else than a POST body is of use: answer now, and reset the
	// rest of the request once answered.
	c.dispatchLocked(s)
	return nil
}

// onData takes a piece of a request body.
func (c *dohH2Conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included (RFC 9113 §6.9)
	c.recvConn -= int32(n)
	if c.recvConn < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if used := dohH2ConnWindow - c.recvConn; used >= dohH2ConnWindow/2 {
		c.fr.WriteWindowUpdate(0, uint32(used))
		c.recvConn = dohH2ConnWindow
	}
	id := f.StreamID
	if id > c.maxID {
		return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream (RFC 9113 §6.1)
	}
	s := c.streams[id]
	switch {
	case s == nil || s.reset:
		return nil // closed, or reset by us: late frames are expected
	case !s.remoteOpen:
		c.rstLocked(id, http2.ErrCodeStreamClosed)
		c.resetStreamLocked(s)
		return nil
	}
	s.recvWin -= n
	if s.recvWin < 0 {
		c.rstLocked(id, http2.ErrCodeFlowControl)
		c.resetStreamLocked(s)
		return nil
	}
	data := f.Data()
	s.received += int64(len(data))
	if s.req.length >= 0 && s.received > s.req.length {
		c.rstLocked(id, http2.ErrCodeProtocol) // RFC 9113 §8.1.1
		c.resetStreamLocked(s)
		return nil
	}
	if !s.dispatched {
		if len(s.body)+len(data) > dns.MaxMsgSize {
			// Too long for a DNS message: answer 413 now.
			s.req.length = int64(len(s.body) + len(data))
			c.dispatchLocked(s)
		} else {
			if s.body == nil {
				s.body = getBodyBuf()
			}
			s.body = append(s.body, data...)
		}
	}
	if f.StreamEnded() {
		if s.req.length >= 0 && s.received != s.req.length {
			c.rstLocked(id, http2.ErrCodeProtocol)
			c.resetStreamLocked(s)
			return nil
		}
		c.endRequestLocked(s)
	}
	return nil
}

// endRequestLocked notes the end of the request of s, and dispatches it
// unless it was.
func (c *dohH2Conn) endRequestLocked(s *dohH2Stream) {
	s.remoteOpen = false
	c.receiving--
	switch {
	case !s.dispatched:
		c.dispatchLocked(s)
	case !s.working && s.pend == nil:
		c.closeStreamLocked(s) // answered already
	}
}

// dispatchLocked hands s to a worker.
func (c *dohH2Conn) dispatchLocked(s *dohH2Stream) {
	s.dispatched, s.working = true, true
	c.running++
	c.l.workers.submit(s)
}

func (c *dohH2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			// RFC 9113 §6.9.2: the change applies to every open stream.
			delta := int64(st.Val) - c.peerWin
			c.peerWin = int64(st.Val)
			for _, s := range c.streams {
				if s.sendWin += delta; s.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(st.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(st.Val)
		}
		return nil
	})
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return ce
	}
	c.fr.WriteSettingsAck()
	c.resumeLocked()
	return nil
}

func (c *dohH2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendConn += inc; c.sendConn > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl) // RFC 9113 §6.9.1
		}
	} else {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		s := c.streams[f.StreamID]
		if s == nil || s.reset {
			return nil
		}
		if s.sendWin += inc; s.sendWin > 1<<31-1 {
			c.rstLocked(s.id, http2.ErrCodeFlowControl)
			c.resetStreamLocked(s)
			return nil
		}
	}
	if len(c.blocked) > 0 {
		c.resumeLocked()
	}
	return nil
}

// bodyPool holds small buffers for POST bodies, which are mostly a few
// dozen bytes: a stream grows its own beyond.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

func getBodyBuf() []byte {
	b := *bodyPool.Get().(*[]byte)
	if b == nil {
		b = make([]byte, 0, 512)
	}
	return b[:0]
}

func putBodyBuf(b []byte) {
	if cap(b) == 0 || cap(b) > 4096 {
		return
	}
	bodyPool.Put(&b)
}
