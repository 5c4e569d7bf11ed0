// Package h2 is the HTTP/2 server (RFC 9113) of the DoH listener,
// written for DoH rather than general HTTP: requests are small, bodies
// are whole DNS messages, replies are one HEADERS frame and a few DATA
// frames.
//
// One goroutine per connection reads and checks frames and hands each
// complete request to Config.Dispatch; the handler answers it with
// Stream.Respond or Stream.Reset. Replies are queued on a per-connection
// buffer and whoever finds no write in progress writes out everything
// queued, so replies ready together leave in one TLS record and one
// write(2) (write.go). net/http's HTTP/2 server starts a goroutine per
// stream and one per frame written, and writes each reply on its own.
package h2

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Limits are the bounds of a Server that may change while it serves
// (Server.SetLimits). Zero values are not defaulted: the caller gives
// them all.
type Limits struct {
	// MaxStreams is the SETTINGS_MAX_CONCURRENT_STREAMS of a connection,
	// read when the connection starts.
	MaxStreams int
	// IdleTimeout ends a connection that has no request in flight and
	// sends nothing for this long.
	IdleTimeout time.Duration
	// ReadTimeout is how long a frame (a whole header block for HEADERS)
	// and a request body may take to arrive once begun.
	ReadTimeout time.Duration
	// WriteTimeout is how long a write may take; a client that stops
	// reading is disconnected after it.
	WriteTimeout time.Duration
}

// Config is the fixed configuration of a Server.
type Config struct {
	// Limits are the initial limits.
	Limits Limits
	// MaxHeaderBytes is the SETTINGS_MAX_HEADER_LIST_SIZE; a request over
	// it is dispatched with Request.HeadersTooLarge set.
	MaxHeaderBytes int
	// MaxBody is the longest request body read. A POST body that grows
	// beyond it is dispatched at once with ContentLength set to what
	// arrived so far, more than MaxBody.
	MaxBody int
	// Dispatch hands a stream whose request is complete to be answered,
	// with Stream.Respond or Stream.Reset, exactly once. It runs on the
	// connection's reader goroutine and must not block.
	Dispatch func(*Stream)
	// PutBuf takes back Response.Buf once the body is written; nil when
	// responses carry no pooled buffers.
	PutBuf func(*[]byte)
	// Logger receives debug logs of connection errors; nil discards them.
	Logger *slog.Logger
}

// Server serves HTTP/2 connections. Its methods are safe for concurrent
// use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	limits atomic.Pointer[Limits]

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool // Shutdown has sent GOAWAY to the connections
}

// NewServer returns a server of cfg; cfg.Dispatch must be set.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, conns: make(map[*conn]struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.SetLimits(cfg.Limits)
	return s
}

// SetLimits replaces the limits: new connections take MaxStreams from
// them, every connection its timeouts from the next frame or write on.
func (s *Server) SetLimits(l Limits) { s.limits.Store(&l) }

func (s *Server) lim() *Limits { return s.limits.Load() }

// ServeConn serves the connection nc, whose TLS handshake (state cs) is
// done, until it ends, then closes it. client is the peer's address.
func (s *Server) ServeConn(nc net.Conn, cs *tls.ConnectionState, client netip.AddrPort) {
	c := newConn(s, nc, cs, client)
	if !s.track(c, true) {
		nc.Close()
		return
	}
	defer s.track(c, false)
	c.serve()
}

// track adds c to the connections Shutdown sends GOAWAY to (add), false
// when Shutdown has done so already, or removes it.
func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// Shutdown sends GOAWAY to every connection (RFC 9113 §6.8), which close
// once their streams are answered, and refuses connections from then on.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
}

// ShutdownGraceful is Shutdown in two steps (RFC 9113 §6.8): a first
// GOAWAY tells clients to open no more streams, and the final one, a
// second later, names the last stream served, so that no stream a client
// sent meanwhile is refused.
func (s *Server) ShutdownGraceful() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.announceGoAway()
	}
}

// Request is the request of a stream, complete when dispatched. It is
// read-only for the handler.
type Request struct {
	Method string
	// Path is the :path as sent: escaped, with the query.
	Path string
	// Fields are the regular header fields, names in lower case.
	Fields []hpack.HeaderField
	// ContentLength is the declared content-length, -1 when none.
	ContentLength int64
	// Body is the POST body, at most Config.MaxBody bytes unless
	// ContentLength says more; valid until Respond or Reset.
	Body []byte
	// HeadersTooLarge: the header list is over Config.MaxHeaderBytes and
	// the fields are incomplete; the answer is 431.
	HeadersTooLarge bool
	Client          netip.AddrPort
	TLS             *tls.ConnectionState // shared, read-only
	Received        time.Time
}

// Header returns the value of the first field named name (lower case),
// "" when there is none.
func (r *Request) Header(name string) string {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// MaxHeaders is the most header fields a Response has.
const MaxHeaders = 12

// Response is the answer to a request. Its fields are held inline, so
// that a Response on the stack answers without allocating.
type Response struct {
	Status int
	Body   []byte
	// Buf is the pooled buffer Body lives in, given to Config.PutBuf once
	// written; nil when none.
	Buf *[]byte

	header [MaxHeaders]responseField
	n      int
}

type responseField struct {
	name, value string
	shared      bool
}

// AddHeader adds the field name (in lower case): value after :status and
// the fields added before; the server adds date. Shared tells that the
// same field is on many replies (a content type, not a length): the
// connection then sends it whole once, and as an index after that. It
// panics past MaxHeaders fields.
func (r *Response) AddHeader(name, value string, shared bool) {
	r.header[r.n] = responseField{name, value, shared}
	r.n++
}
