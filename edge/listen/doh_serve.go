package listen

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// dohRequest is one DoH request, whichever HTTP version carried it: what
// process needs of it and nothing of net/http.
type dohRequest struct {
	method      string
	path        string // unescaped, without the query
	rawQuery    string
	contentType string // the first Content-Type
	accept      string // the first Accept
	body        io.Reader
	length      int64 // the declared Content-Length, -1 when unknown
	client      netip.AddrPort
	tls         *tls.ConnectionState // nil on cleartext; shared, read-only
	proto       int                  // HTTP major version
	received    time.Time
}

// dohRespKind selects the header set of a dohResponse.
type dohRespKind uint8

const (
	dohRespText      dohRespKind = iota // an error as a short text
	dohRespDNS                          // a DNS message
	dohRespJSON                         // a JSON API reply or error
	dohRespPreflight                    // 204 to a CORS preflight
)

// dohResponse is the answer process gives to a dohRequest: a status, a
// header set and a body. Every response also carries the CORS origin and,
// when altSvc, the Alt-Svc of HTTP/3.
type dohResponse struct {
	status int
	kind   dohRespKind
	ctype  string // Content-Type of dohRespJSON
	cache  string // Cache-Control of dohRespDNS and dohRespJSON
	allow  bool   // add Allow (405)
	altSvc bool
	body   []byte
	buf    *[]byte // the pooled buffer body lives in, nil if none
	// abort: send nothing (the pipeline dropped the query); the stream is
	// reset, an HTTP/1.1 connection closed.
	abort bool
}

// release gives back the pooled buffer of the body. The body must not be
// used afterwards.
func (w *dohResponse) release() {
	if w.buf != nil {
		putBuf(w.buf)
		w.buf = nil
	}
	w.body = nil
}

func (w *dohResponse) fail(e *dohError) {
	w.status, w.kind, w.body = e.status, dohRespText, []byte(e.text+"\n")
}

func (w *dohResponse) failJSON(e *dohError) {
	w.status, w.kind, w.ctype, w.cache = e.status, dohRespJSON, dnsJSONType, "no-store"
	w.body, _ = json.Marshal(struct {
		Error string `json:"error"`
	}{e.text})
}

// dns makes w the 200 answer b, which lives in the pooled buffer buf.
func (w *dohResponse) dns(b []byte, buf *[]byte) {
	w.status, w.kind, w.cache, w.body, w.buf = http.StatusOK, dohRespDNS, dohCacheControl(b), b, buf
}

// process serves r into w, the same way for every HTTP version. It may
// block for as long as the pipeline does (Config.QueryTimeout). The
// caller gives w's buffer back with release once the body is written.
func (l *DoH) process(r *dohRequest, w *dohResponse) {
	*w = dohResponse{altSvc: l.hdr.altSvc != nil && r.proto < 3}
	id, ok := l.paths.match(r.path)
	if !ok {
		w.fail(&dohError{http.StatusNotFound, "not found"})
		return
	}
	switch r.method {
	case http.MethodPost:
		l.m.query()
		if !isDNSMessageType(r.contentType) {
			l.m.drop(reasonProtocol)
			w.fail(&dohError{http.StatusUnsupportedMediaType, "content type is not " + dnsMessageType})
			return
		}
		body := r.body
		if body == nil {
			body = http.NoBody
		}
		buf := getBuf()
		msg, derr := readDoHPost(body, r.length, *buf)
		if derr != nil {
			putBuf(buf)
			l.m.drop(reasonProtocol)
			w.fail(derr)
			return
		}
		l.serveWire(r, w, msg, id)
		putBuf(buf)
	case http.MethodGet:
		l.m.query()
		if wantsJSON(r.rawQuery, r.accept) {
			l.serveJSON(r, w, id)
			return
		}
		buf := getBuf()
		msg, derr := decodeDoHGet(r.rawQuery, *buf)
		if derr != nil {
			putBuf(buf)
			l.m.drop(reasonProtocol)
			w.fail(derr)
			return
		}
		l.serveWire(r, w, msg, id)
		putBuf(buf)
	case http.MethodOptions:
		// CORS preflight (Fetch standard): any origin may query.
		w.status, w.kind = http.StatusNoContent, dohRespPreflight
	default:
		w.allow = true
		w.fail(&dohError{http.StatusMethodNotAllowed, "method not allowed"})
	}
}

// serveWire answers the DNS message msg.
func (l *DoH) serveWire(r *dohRequest, w *dohResponse, msg []byte, id string) {
	q, act, why := check(msg)
	switch act {
	case actDrop:
		l.m.drop(why)
		w.fail(dohBadRequest("not a DNS query: " + why.String()))
		return
	case actFormErr:
		l.m.drop(reasonProtocol)
		w.fail(dohBadRequest("malformed DNS query"))
		return
	case actNotImp, actBadVers:
		// A well-formed message: its DNS error reply is the answer.
		out := getBuf()
		w.dns(reject(msg, q, act, *out), out)
		l.m.response(rejectRcode(act), false)
		return
	}
	if !l.tryAcquire() {
		l.m.drop(reasonOverload)
		w.fail(&dohError{http.StatusServiceUnavailable, "overloaded"})
		return
	}
	defer l.release()
	req := &pipeline.Request{
		Msg:      q,
		Wire:     msg, // valid until serveWire returns
		Client:   r.client,
		Local:    l.addr,
		Listener: pipeline.KindDoH,
		ClientID: id,
		TLS:      r.tls,
		Received: r.received,
		MaxSize:  dns.MaxMsgSize,
	}
	out, obuf := l.answer(req, 0)
	if out == nil {
		// The pipeline chose to send nothing: the closest HTTP has is to
		// abort the stream (HTTP/1.1 closes the connection).
		w.abort = true
		return
	}
	w.dns(out, obuf)
}

// serveHTTP is the net/http handler: HTTP/1.1, h2c and HTTP/3.
func (l *DoH) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	req := dohRequest{
		method:      r.Method,
		path:        r.URL.Path,
		rawQuery:    r.URL.RawQuery,
		contentType: r.Header.Get("Content-Type"),
		accept:      r.Header.Get("Accept"),
		body:        r.Body,
		length:      r.ContentLength,
		client:      dohRemoteAddr(r),
		tls:         r.TLS,
		proto:       r.ProtoMajor,
		received:    time.Now(),
	}
	var w dohResponse
	defer w.release()
	l.process(&req, &w)
	if w.abort {
		panic(http.ErrAbortHandler)
	}
	h := rw.Header()
	h["Access-Control-Allow-Origin"] = l.hdr.cors
	if w.altSvc {
		h["Alt-Svc"] = l.hdr.altSvc
	}
	switch w.kind {
	case dohRespPreflight:
		h["Access-Control-Allow-Methods"] = l.hdr.allow
		h["Access-Control-Allow-Headers"] = l.hdr.allowHdrs
		h["Access-Control-Max-Age"] = l.hdr.maxAge
		h["Allow"] = l.hdr.allow
		rw.WriteHeader(w.status)
		return
	case dohRespText:
		h["Content-Type"] = l.hdr.text
		h["X-Content-Type-Options"] = l.hdr.nosniff
		h["Cache-Control"] = l.hdr.noStore
		if w.allow {
			h["Allow"] = l.hdr.allow
		}
	default:
		vals := new([3]string) // one allocation for the three values
		vals[0] = w.ctype
		if w.kind == dohRespDNS {
			vals[0] = dnsMessageType
		}
		vals[1] = w.cache
		vals[2] = strconv.Itoa(len(w.body))
		h["Content-Type"] = vals[0:1:1]
		h["Cache-Control"] = vals[1:2:2]
		h["Content-Length"] = vals[2:3:3]
	}
	rw.WriteHeader(w.status)
	rw.Write(w.body)
}

// dohSplitPath splits the :path of an HTTP/2 request into the unescaped
// path and the raw query, as net/url does for net/http.
func dohSplitPath(p string) (path, rawQuery string) {
	path, rawQuery, _ = strings.Cut(p, "?")
	if strings.IndexByte(path, '%') >= 0 {
		if u, err := url.PathUnescape(path); err == nil {
			path = u
		}
	}
	return path, rawQuery
}
