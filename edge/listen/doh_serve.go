package listen

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// dohRequest is one DoH request, whichever HTTP version carried it: what
// process needs of it and nothing of net/http.
type dohRequest struct {
	dohHead
	// body is the POST body: read from body, or whole in bodyBytes.
	body      io.Reader
	bodyBytes []byte
	client    netip.AddrPort
	tls       *tls.ConnectionState // nil on cleartext; shared, read-only
	proto     int                  // HTTP major version
	received  time.Time
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
	// traceID and traceParent are the query's trace, echoed in the
	// response headers; empty on responses that answer no query.
	traceID, traceParent string
	body                 []byte
	buf                  *[]byte // the pooled buffer body lives in, nil if none
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

// newResponse returns the response to a request of HTTP major version
// proto, before process fills it.
func (l *DoH) newResponse(proto int) dohResponse {
	return dohResponse{altSvc: l.altSvc.value != "" && proto < 3}
}

// process serves r into w, the same way for every HTTP version. It may
// block for as long as the pipeline does (Config.QueryTimeout). The
// caller gives w's buffer back with release once the body is written.
func (l *DoH) process(r *dohRequest, w *dohResponse) {
	*w = l.newResponse(r.proto)
	op, id, derr := l.paths.parse(&r.dohHead)
	switch op {
	case dohOpGet, dohOpJSON, dohOpPost:
		l.m.query()
		if derr != nil {
			l.m.drop(reasonProtocol)
		}
	}
	if derr != nil {
		w.allow = derr.status == http.StatusMethodNotAllowed
		w.fail(derr)
		return
	}
	switch op {
	case dohOpPost:
		if r.bodyBytes != nil || r.body == nil {
			// Read whole already (our HTTP/2 server).
			if len(r.bodyBytes) > dns.MaxMsgSize {
				l.m.drop(reasonProtocol)
				w.fail(errDoHTooLarge)
				return
			}
			l.serveWire(r, w, r.bodyBytes, id)
			return
		}
		buf := getBuf()
		msg, derr := readDoHPost(r.body, r.length, *buf)
		if derr != nil {
			putBuf(buf)
			l.m.drop(reasonProtocol)
			w.fail(derr)
			return
		}
		l.serveWire(r, w, msg, id)
		putBuf(buf)
	case dohOpJSON:
		l.serveJSON(r, w, id)
	case dohOpGet:
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
	case dohOpPreflight:
		w.status, w.kind = http.StatusNoContent, dohRespPreflight
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
	req := getRequest()
	defer putRequest(req)
	*req = pipeline.Request{
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
	req.TraceID, req.TraceParent, req.TraceStage = r.trace()
	out, obuf := l.answer(req, 0)
	w.traceID, w.traceParent = req.Trace(), req.TraceParent
	if out == nil {
		// The pipeline chose to send nothing: the closest HTTP has is to
		// abort the stream (HTTP/1.1 closes the connection).
		w.abort = true
		return
	}
	w.dns(out, obuf)
}

// serveHTTP is the net/http handler: HTTP/1.1, h2c and HTTP/3. It adapts
// the request to process and the response to net/http.
func (l *DoH) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	req := dohRequest{
		dohHead: dohHead{
			method:      r.Method,
			path:        r.URL.EscapedPath(),
			rawQuery:    r.URL.RawQuery,
			contentType: r.Header.Get("Content-Type"),
			accept:      r.Header.Get("Accept"),
			length:      r.ContentLength,
			traceParent: firstValue(r.Header[hdrTraceParent]),
			traceID:     firstValue(r.Header[hdrTraceID]),
			traceStage:  firstValue(r.Header[hdrTraceStage]),
		},
		body:     r.Body,
		client:   dohRemoteAddr(r),
		tls:      r.TLS,
		proto:    r.ProtoMajor,
		received: time.Now(),
	}
	var w dohResponse
	defer w.release()
	l.process(&req, &w)
	if w.abort {
		panic(http.ErrAbortHandler)
	}
	var hs dohHeaderSet
	l.responseHeaders(&w, &hs)
	hs.writeTo(rw.Header())
	rw.WriteHeader(w.status)
	if len(w.body) > 0 {
		rw.Write(w.body)
	}
}

// firstValue returns the first of vs, "" when none.
func firstValue(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
