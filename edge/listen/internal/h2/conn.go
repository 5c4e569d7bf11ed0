package h2

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/dnsedge/dnsedge/edge/listen/internal/coalesce"
)

const (
	// MaxFrame is the SETTINGS_MAX_FRAME_SIZE we keep: the default.
	MaxFrame = 16384
	// StreamWindow is our SETTINGS_INITIAL_WINDOW_SIZE: a whole 64 KiB
	// POST body and then some, so that a body too long to be a DNS
	// message (Config.MaxBody) shows itself before the window runs out.
	// Stream windows are never replenished: no request may need more.
	StreamWindow = 1 << 17
	// ConnWindow is the connection receive window, replenished once
	// half of it is used.
	ConnWindow = 1 << 20
	// readBuf is the read buffer of a connection.
	readBuf = 16 << 10
)

// errIdle ends a connection idle for Limits.IdleTimeout.
var errIdle = errors.New("idle connection")

// conn is one HTTP/2 connection. The reader goroutine (serve) owns
// the Framer's read side and the fields marked reader-owned; everything
// else is under mu.
type conn struct {
	srv    *Server
	log    *slog.Logger
	nc     net.Conn // the TLS connection
	tls    *tls.ConnectionState
	client netip.AddrPort
	br     *bufio.Reader
	fr     *http2.Framer

	// Reader-owned.
	recvConn   int32 // connection receive window left
	maxStreams int   // SETTINGS_MAX_CONCURRENT_STREAMS we sent
	hdr        headerReader

	mu        sync.Mutex
	w         coalesce.Writer // frames queued for writing
	streams   map[uint32]*Stream
	maxID     uint32 // the highest client stream id seen
	running   int    // streams whose request is being processed
	receiving int    // streams whose request is still arriving
	goingAway bool   // GOAWAY sent: close once the streams are done
	announced bool   // the first GOAWAY of a graceful shutdown sent
	henc      headerEncoder
	hbuf      []byte // the header block being written
	sendConn  int64  // connection send window
	peerWin   int64  // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame int    // the peer's SETTINGS_MAX_FRAME_SIZE
	blocked   []*Stream
	flushers  sync.WaitGroup
}

// Stream is one request and its reply. The handler reads Req and
// answers with Respond or Reset, once.
type Stream struct {
	Req Request

	c  *conn
	id uint32
	// body is the POST body so far, until the request is dispatched; then
	// Req.Body's until the stream is answered.
	body []byte

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

func newConn(srv *Server, nc net.Conn, cs *tls.ConnectionState, client netip.AddrPort) *conn {
	c := &conn{
		srv:       srv,
		log:       srv.log,
		nc:        nc,
		tls:       cs,
		client:    client,
		br:        bufio.NewReaderSize(nc, readBuf),
		recvConn:  ConnWindow,
		streams:   make(map[uint32]*Stream),
		sendConn:  65535,
		peerWin:   65535,
		peerFrame: 16384,
	}
	c.w.Init(&c.mu, nc, func() time.Duration { return srv.lim().WriteTimeout }, true, func(err error) {
		c.log.Debug("http/2 write", "client", c.client.String(), "err", err)
	})
	c.fr = http2.NewFramer(&c.w, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = uint32(srv.cfg.MaxHeaderBytes)
	c.hdr.init(c.fr.ReadMetaHeaders, c.fr.MaxHeaderListSize)
	c.fr.SetMaxReadFrameSize(MaxFrame)
	c.fr.SetReuseFrames()
	c.henc = newHeaderEncoder()
	return c
}

// serve serves the connection until it ends.
func (c *conn) serve() {
	err := c.run()
	var code http2.ErrCode
	var ce http2.ConnectionError
	goaway := true
	switch {
	case errors.As(err, &ce):
		code = http2.ErrCode(ce)
	case errors.Is(err, http2.ErrFrameTooLarge):
		code = http2.ErrCodeFrameSize
	case errors.Is(err, errIdle):
		code = http2.ErrCodeNo
	default:
		goaway = false
		if err != io.EOF && !errors.Is(err, net.ErrClosed) {
			c.log.Debug("http/2 connection", "client", c.client.String(), "err", err)
		}
	}
	if goaway && code != http2.ErrCodeNo {
		c.log.Debug("http/2 connection error", "client", c.client.String(), "code", code.String(), "err", err)
	}
	c.stop(goaway, code)
}

// run reads frames until the connection ends, and returns why.
func (c *conn) run() error {
	lim := c.srv.lim()
	c.maxStreams = lim.MaxStreams
	c.mu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(min(c.maxStreams, 1<<31-1))},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.srv.cfg.MaxHeaderBytes)},
	)
	c.fr.WriteWindowUpdate(0, ConnWindow-65535)
	c.kickLocked()
	c.mu.Unlock()

	c.nc.SetReadDeadline(time.Now().Add(lim.ReadTimeout))
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
		// A HEADERS frame that ends its block, already here, is decoded
		// by c.hdr (headers.go); any other by the Framer.
		c.fr.ReadMetaHeaders = c.hdr.dec
		if c.wholeBlockBuffered() {
			c.fr.ReadMetaHeaders = nil
		}
		f, err := c.fr.ReadFrame()
		if first && err == nil {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return http2.ConnectionError(http2.ErrCodeProtocol) // RFC 9113 §3.4
			}
			first = false
		}
		if hf, ok := f.(*http2.HeadersFrame); ok && err == nil {
			var b headerBlock
			if b, err = c.hdr.decode(hf); err == nil {
				err = c.onHeaders(b)
			}
			f = nil // handled, or err says why not
		}
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
		if f != nil {
			if err := c.handle(f); err != nil {
				return err
			}
		}
		if c.br.Buffered() == 0 {
			// Whatever the frames read called for goes out now.
			c.mu.Lock()
			c.kickLocked()
			c.mu.Unlock()
		}
	}
}

// wholeBlockBuffered reports whether the next frame, whole in c.br, is
// a HEADERS frame that ends its header block.
func (c *conn) wholeBlockBuffered() bool {
	if c.br.Buffered() < 9 {
		return false
	}
	h, _ := c.br.Peek(9)
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	return http2.FrameType(h[3]) == http2.FrameHeaders && h[4]&byte(http2.FlagHeadersEndHeaders) != 0 &&
		c.br.Buffered() >= 9+length
}

// waitFrame waits until a frame has begun to arrive, for as long as the
// connection may stay idle, then sets the deadline by which the frame (a
// whole header block for HEADERS) must have arrived: Limits.ReadTimeout.
// A frame already buffered whole needs no deadline.
func (c *conn) waitFrame() error {
	cfg := c.srv.lim()
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
			return errIdle
		}
		// Queries are being answered: the connection is not idle.
	}
	if n := c.br.Buffered(); n >= 9 {
		h, _ := c.br.Peek(9)
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		whole := n >= 9+length && !(http2.FrameType(h[3]) == http2.FrameHeaders && h[4]&byte(http2.FlagHeadersEndHeaders) == 0)
		if whole || length > MaxFrame {
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
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(headerBlock{id: f.StreamID, ended: f.StreamEnded(), fields: f.Fields, truncated: f.Truncated})
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		return http2.ConnectionError(http2.ErrCodeInternal) // decoded before handle
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
func (c *conn) onHeaders(f headerBlock) error {
	id := f.id
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
		if !f.ended {
			c.rstLocked(id, http2.ErrCodeProtocol) // trailers end the stream
			return nil
		}
		c.endRequestLocked(s)
		return nil
	}
	c.maxID = id
	if c.goingAway || c.w.BrokenLocked() {
		return nil // beyond the GOAWAY's last stream: ignored
	}
	if len(c.streams) >= c.maxStreams {
		c.rstLocked(id, http2.ErrCodeRefusedStream)
		return nil
	}
	s := &Stream{
		c:          c,
		id:         id,
		remoteOpen: !f.ended,
		recvWin:    StreamWindow,
		sendWin:    c.peerWin,
	}
	r := &s.Req
	r.ContentLength, r.Client, r.TLS = -1, c.client, c.tls
	var scheme string
	fields := f.fields
	for i, hf := range f.fields {
		if !hf.IsPseudo() {
			fields = f.fields[i:]
			break
		}
		switch hf.Name {
		case ":method":
			r.Method = hf.Value
		case ":path":
			r.Path = hf.Value
		case ":scheme":
			scheme = hf.Value
		}
	}
	if len(fields) > 0 && fields[0].IsPseudo() {
		fields = nil // only pseudo-header fields
	}
	r.Fields = slices.Clone(fields) // f.fields is the reader's
	for _, hf := range fields {
		switch hf.Name {
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || r.ContentLength >= 0 && int64(n) != r.ContentLength {
				c.rstLocked(id, http2.ErrCodeProtocol)
				return nil
			}
			r.ContentLength = int64(n)
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
	if r.Method == "" || r.Method != http.MethodConnect && (scheme == "" || r.Path == "") {
		c.rstLocked(id, http2.ErrCodeProtocol) // RFC 9113 §8.3.1
		return nil
	}
	r.Received = time.Now()
	c.streams[id] = s
	if s.remoteOpen {
		c.receiving++
	}
	if f.truncated {
		// The header list is over MAX_HEADER_LIST_SIZE: answered 431 by
		// the handler.
		r.HeadersTooLarge = true
		c.dispatchLocked(s)
		return nil
	}
	if s.remoteOpen && r.Method == http.MethodPost && r.ContentLength <= int64(c.srv.cfg.MaxBody) {
		return nil // wait for the body
	}
	// Nothing else than a POST body is of use: answer now, and reset the
	// rest of the request once answered.
	c.dispatchLocked(s)
	return nil
}

// onData takes a piece of a request body.
func (c *conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included (RFC 9113 §6.9)
	c.recvConn -= int32(n)
	if c.recvConn < 0 {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if used := ConnWindow - c.recvConn; used >= ConnWindow/2 {
		c.fr.WriteWindowUpdate(0, uint32(used))
		c.recvConn = ConnWindow
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
	if s.Req.ContentLength >= 0 && s.received > s.Req.ContentLength {
		c.rstLocked(id, http2.ErrCodeProtocol) // RFC 9113 §8.1.1
		c.resetStreamLocked(s)
		return nil
	}
	if !s.dispatched {
		if len(s.body)+len(data) > c.srv.cfg.MaxBody {
			// Too long to be read: answer now.
			s.Req.ContentLength = int64(len(s.body) + len(data))
			c.dispatchLocked(s)
		} else {
			if s.body == nil {
				s.body = getBodyBuf()
			}
			s.body = append(s.body, data...)
		}
	}
	if f.StreamEnded() {
		if s.Req.ContentLength >= 0 && s.received != s.Req.ContentLength {
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
func (c *conn) endRequestLocked(s *Stream) {
	s.remoteOpen = false
	c.receiving--
	switch {
	case !s.dispatched:
		c.dispatchLocked(s)
	case !s.working && s.pend == nil:
		c.closeStreamLocked(s) // answered already
	}
}

// dispatchLocked hands s to the handler.
func (c *conn) dispatchLocked(s *Stream) {
	s.dispatched, s.working = true, true
	c.running++
	s.Req.Body = s.body
	c.srv.cfg.Dispatch(s)
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
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
			c.henc.setPeerLimit(st.Val)
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

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
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
