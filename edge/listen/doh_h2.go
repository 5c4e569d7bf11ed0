package listen

import (
	"cmp"
	"crypto/tls"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/listen/internal/h2"
)

// The DoH listener's side of its own HTTP/2 server (internal/h2), which
// serves the connections that negotiated "h2" over TLS: the server
// hands each complete request to a worker, which adapts it to process
// and the response back.

// setupH2 sets up the HTTP/2 server of TLS "h2" connections.
func (l *DoH) setupH2() {
	cfg := l.cfg
	l.h2 = h2.NewServer(h2.Config{
		Limits:         h2Limits(l.limits(), cfg.WriteTimeout),
		MaxHeaderBytes: dohMaxHeaderBytes,
		MaxBody:        dns.MaxMsgSize,
		Dispatch:       func(s *h2.Stream) { l.workers.submit(s) },
		PutBuf:         putBuf,
		Logger:         l.log,
	})
	l.workers = newWorkers(l.serveH2Stream, cfg.IdleTimeout, dohMaxWorkers, l.done)
	l.ln.h2 = func(tc *tls.Conn, c *dohConn) {
		l.h2wg.Go(func() {
			cs := tc.ConnectionState()
			l.h2.ServeConn(tc, &cs, unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()))
		})
	}
}

// h2Limits are the HTTP/2 server's limits under lim.
func h2Limits(lim *Limits, writeTimeout time.Duration) h2.Limits {
	return h2.Limits{
		MaxStreams:   lim.MaxQueriesPerConn,
		IdleTimeout:  lim.IdleTimeout,
		ReadTimeout:  lim.ReadTimeout,
		WriteTimeout: writeTimeout,
	}
}

// serveH2Stream answers the request of s. It runs on a worker.
func (l *DoH) serveH2Stream(s *h2.Stream) {
	q := &s.Req
	var w dohResponse
	defer func() {
		if r := recover(); r != nil {
			l.m.panicked()
			l.log.Error("panic serving http/2 request", "panic", r, "client", q.Client.String(), "stack", string(debug.Stack()))
			w.release()
			s.Reset()
		}
	}()
	if q.HeadersTooLarge {
		w = l.newResponse(2)
		w.fail(&dohError{http.StatusRequestHeaderFieldsTooLarge, "request headers too large"})
	} else {
		r := dohRequest{
			dohHead: dohHead{
				method:      q.Method,
				contentType: q.Header("content-type"),
				accept:      q.Header("accept"),
				length:      q.ContentLength,
			},
			bodyBytes: q.Body,
			client:    q.Client,
			tls:       q.TLS,
			proto:     2,
			received:  q.Received,
		}
		r.path, r.rawQuery, _ = strings.Cut(q.Path, "?")
		for _, f := range q.Fields {
			switch f.Name {
			case hdrTraceParentLower:
				r.traceParent = cmp.Or(r.traceParent, f.Value)
			case hdrTraceIDLower:
				r.traceID = cmp.Or(r.traceID, f.Value)
			case hdrTraceStageLower:
				r.traceStage = cmp.Or(r.traceStage, f.Value)
			}
		}
		l.process(&r, &w)
	}
	if w.abort {
		w.release()
		s.Reset()
		return
	}
	var hs dohHeaderSet
	l.responseHeaders(&w, &hs)
	resp := h2.Response{Status: w.status, Body: w.body, Buf: w.buf}
	for _, h := range hs.fields() {
		resp.AddHeader(h.lower, h.value, h.shared != nil)
	}
	w.body, w.buf = nil, nil // the server's now
	s.Respond(&resp)
}
