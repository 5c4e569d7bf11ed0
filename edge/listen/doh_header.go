package listen

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// The one place where DoH request heads are read and response headers
// chosen, whichever HTTP stack carries them: our own HTTP/2 server
// (doh_h2.go), and net/http for HTTP/1.1, h2c and HTTP/3 (serveHTTP).
// Each stack only adapts: it fills a dohHead from its request and emits
// the dohHeaderSet of the response in its own form.

// dohHead is what DoH reads of an HTTP request.
type dohHead struct {
	method      string
	path        string // as sent: escaped, without the query
	rawQuery    string
	contentType string // the first Content-Type
	accept      string // the first Accept
	length      int64  // the declared Content-Length, -1 when unknown
	// The trace fields as sent (the first of each), unchecked: see
	// trace.
	traceParent string // traceparent (W3C Trace Context)
	traceID     string // X-DNS-TraceID
	traceStage  string // X-DNS-Stage
}

// Request header fields of tracing, canonical and as HTTP/2 and HTTP/3
// send them.
const (
	hdrTraceParent      = "Traceparent"
	hdrTraceID          = "X-Dns-Traceid"
	hdrTraceStage       = "X-Dns-Stage"
	hdrTraceParentLower = "traceparent"
	hdrTraceIDLower     = "x-dns-traceid"
	hdrTraceStageLower  = "x-dns-stage"
)

// trace returns what the request says of its trace: the trace id of a
// well-formed traceparent (W3C Trace Context §3.2: version 00, or a later
// one read as 00; trace and parent ids of lower-case hex, not all zero),
// else the X-DNS-TraceID when it is a token (see isTraceToken); the
// traceparent itself, normalised to version 00, when it was well formed;
// and the X-DNS-Stage when it is a token. A field that is not well formed
// is ignored, as the W3C specification asks: the trace stage then makes
// a new trace id.
func (h *dohHead) trace() (id, parent, stage string) {
	if tid, ok := parseTraceParent(h.traceParent); ok {
		id, parent = tid, h.traceParent[:55]
		if parent[:2] != "00" {
			parent = "00" + parent[2:]
		}
	} else if isTraceToken(h.traceID, maxTraceIDLen) {
		id = h.traceID
	}
	if isTraceToken(h.traceStage, maxTraceStageLen) {
		stage = h.traceStage
	}
	return id, parent, stage
}

// Longest X-DNS-TraceID and X-DNS-Stage taken.
const (
	maxTraceIDLen    = 64
	maxTraceStageLen = 32
)

// parseTraceParent returns the trace id of a traceparent header value
// "vv-<32 hex>-<16 hex>-ff", ok false when it is not one.
func parseTraceParent(v string) (traceID string, ok bool) {
	if len(v) < 55 || !isHex(v[:2]) || v[:2] == "ff" || v[2] != '-' || v[35] != '-' || v[52] != '-' || !isHex(v[53:55]) {
		return "", false
	}
	if v[:2] == "00" && len(v) != 55 || len(v) > 55 && v[55] != '-' {
		return "", false
	}
	tid, pid := v[3:35], v[36:52]
	if !isHex(tid) || !isHex(pid) || allZero(tid) || allZero(pid) {
		return "", false
	}
	return tid, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// isTraceToken reports whether s is 1 to max letters, digits, '-', '_',
// '.' and ':': what is taken of X-DNS-TraceID and X-DNS-Stage, so that
// neither can smuggle anything into logs or upstream headers.
func isTraceToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// dohOp is what a request asks for.
type dohOp uint8

const (
	dohOpNone      dohOp = iota // nothing DoH serves: 404 or 405
	dohOpGet                    // a DNS message in the dns parameter (RFC 8484 §4.1)
	dohOpJSON                   // a JSON API query (doh_json.go)
	dohOpPost                   // a DNS message as the body
	dohOpPreflight              // a CORS preflight
)

// parse reads the head h of a request: what it asks for, the client id
// its path carries (p.match), and the error it is to be answered with,
// nil when it is to be served. A GET or POST of a DoH path has its op
// even when it fails.
func (p dohPaths) parse(h *dohHead) (op dohOp, id string, err *dohError) {
	path := h.path
	if strings.IndexByte(path, '%') >= 0 {
		if u, uerr := url.PathUnescape(path); uerr == nil {
			path = u
		}
	}
	id, ok := p.match(path)
	if !ok {
		return dohOpNone, "", &dohError{http.StatusNotFound, "not found"}
	}
	switch h.method {
	case http.MethodPost:
		if !isDNSMessageType(h.contentType) {
			return dohOpPost, id, &dohError{http.StatusUnsupportedMediaType, "content type is not " + dnsMessageType}
		}
		if h.length > dns.MaxMsgSize {
			return dohOpPost, id, errDoHTooLarge
		}
		return dohOpPost, id, nil
	case http.MethodGet:
		if wantsJSON(h.rawQuery, h.accept) {
			return dohOpJSON, id, nil
		}
		return dohOpGet, id, nil
	case http.MethodOptions:
		// CORS preflight (Fetch standard): any origin may query.
		return dohOpPreflight, id, nil
	}
	return dohOpNone, id, errDoHMethod
}

var (
	errDoHTooLarge = &dohError{http.StatusRequestEntityTooLarge, "body larger than a DNS message"}
	errDoHMethod   = &dohError{http.StatusMethodNotAllowed, "method not allowed"}
)

// dohHeader is one response header field.
type dohHeader struct {
	name  string // canonical, for net/http
	lower string // as HTTP/2 and HTTP/3 send it
	value string
	// shared is value in a slice net/http may share between responses,
	// nil when value is the response's own.
	shared []string
}

func newDoHHeader(name, value string) dohHeader {
	return dohHeader{name, strings.ToLower(name), value, []string{value}}
}

// The response header fields of fixed value.
var (
	dohHdrCORS         = newDoHHeader("Access-Control-Allow-Origin", "*")
	dohHdrAllowMethods = newDoHHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	dohHdrAllowHeaders = newDoHHeader("Access-Control-Allow-Headers", "Content-Type, Accept, traceparent, X-DNS-TraceID, X-DNS-Stage")
	dohHdrExpose       = newDoHHeader("Access-Control-Expose-Headers", "X-DNS-TraceID, traceparent")
	dohHdrMaxAge       = newDoHHeader("Access-Control-Max-Age", "86400")
	dohHdrAllow        = newDoHHeader("Allow", "GET, POST, OPTIONS")
	dohHdrText         = newDoHHeader("Content-Type", "text/plain; charset=utf-8")
	dohHdrDNS          = newDoHHeader("Content-Type", dnsMessageType)
	dohHdrNosniff      = newDoHHeader("X-Content-Type-Options", "nosniff")
	dohHdrNoStore      = newDoHHeader("Cache-Control", "no-store")
)

// newDoHAltSvc returns the Alt-Svc field that advertises HTTP/3 on port
// (RFC 7838).
func newDoHAltSvc(port uint16) dohHeader {
	return newDoHHeader("Alt-Svc", `h3=":`+strconv.Itoa(int(port))+`"; ma=86400`)
}

// dohMaxRespHeaders is the most fields a response has.
const dohMaxRespHeaders = 11

// dohHeaderSet is the header fields of one response, in order.
type dohHeaderSet struct {
	n int
	h [dohMaxRespHeaders]dohHeader
}

func (hs *dohHeaderSet) add(h dohHeader) {
	hs.h[hs.n] = h
	hs.n++
}

func (hs *dohHeaderSet) fields() []dohHeader { return hs.h[:hs.n] }

// responseHeaders sets hs to the header fields of w: CORS and Alt-Svc on
// every response; the preflight's; Content-Type, Cache-Control and
// Content-Length of the others (with nosniff and, for 405, Allow on
// errors); and on answers to queries, the query's trace: X-DNS-TraceID,
// the client's traceparent when it sent one, and the CORS field that lets
// scripts read them. The server adds Date.
func (l *DoH) responseHeaders(w *dohResponse, hs *dohHeaderSet) {
	hs.n = 0
	hs.add(dohHdrCORS)
	if w.altSvc {
		hs.add(l.altSvc)
	}
	switch w.kind {
	case dohRespPreflight:
		hs.add(dohHdrAllowMethods)
		hs.add(dohHdrAllowHeaders)
		hs.add(dohHdrMaxAge)
		hs.add(dohHdrAllow)
		return
	case dohRespText:
		hs.add(dohHdrText)
		hs.add(dohHdrNosniff)
		hs.add(dohHdrNoStore)
		if w.allow {
			hs.add(dohHdrAllow)
		}
	case dohRespDNS:
		hs.add(dohHdrDNS)
		hs.add(dohHeader{name: "Cache-Control", lower: "cache-control", value: w.cache})
	default:
		hs.add(dohHeader{name: "Content-Type", lower: "content-type", value: w.ctype})
		hs.add(dohHeader{name: "Cache-Control", lower: "cache-control", value: w.cache})
	}
	hs.add(dohHeader{name: "Content-Length", lower: "content-length", value: strconv.Itoa(len(w.body))})
	if w.traceID != "" {
		hs.add(dohHdrExpose)
		hs.add(dohHeader{name: hdrTraceID, lower: hdrTraceIDLower, value: w.traceID})
		if w.traceParent != "" {
			hs.add(dohHeader{name: hdrTraceParent, lower: hdrTraceParentLower, value: w.traceParent})
		}
	}
}

// writeTo sets the fields of hs in h, for net/http.
func (hs *dohHeaderSet) writeTo(h http.Header) {
	var own *[5]string // one allocation for the response's own values
	k := 0
	for _, f := range hs.fields() {
		if f.shared != nil {
			h[f.name] = f.shared
			continue
		}
		if own == nil {
			own = new([5]string)
		}
		own[k] = f.value
		h[f.name] = own[k : k+1 : k+1]
		k++
	}
}
