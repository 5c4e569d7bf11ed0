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
	dohHdrAllowHeaders = newDoHHeader("Access-Control-Allow-Headers", "Content-Type, Accept")
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
const dohMaxRespHeaders = 8

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
// errors). The server adds Date.
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
}

// writeTo sets the fields of hs in h, for net/http.
func (hs *dohHeaderSet) writeTo(h http.Header) {
	var own *[3]string // one allocation for the response's own values
	k := 0
	for _, f := range hs.fields() {
		if f.shared != nil {
			h[f.name] = f.shared
			continue
		}
		if own == nil {
			own = new([3]string)
		}
		own[k] = f.value
		h[f.name] = own[k : k+1 : k+1]
		k++
	}
}
