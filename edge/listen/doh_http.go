package listen

import (
	"encoding/base64"
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

// dnsMessageType is the media type of DoH (RFC 8484 §6).
const dnsMessageType = "application/dns-message"

// dohError is a request the listener refuses, with its HTTP status and a
// short text for the body.
type dohError struct {
	status int
	text   string
}

func (e *dohError) Error() string { return strconv.Itoa(e.status) + " " + e.text }

func dohBadRequest(text string) *dohError { return &dohError{http.StatusBadRequest, text} }

// dohMaxGetParam is the longest dns parameter: the unpadded base64url of the
// largest DNS message.
const dohMaxGetParam = (dns.MaxMsgSize*8 + 5) / 6

// decodeDoHGet decodes the dns parameter of the raw query string of a GET
// request (RFC 8484 §4.1: base64url, padding omitted, though padded
// values are accepted too) into dst, which holds at least 65535 bytes,
// and returns the message. It fails with 400 when the parameter is
// missing, empty or not base64url, 414 when it is too long. It never
// allocates unless the value is percent-encoded.
func decodeDoHGet(rawQuery string, dst []byte) ([]byte, *dohError) {
	v, ok := dohQueryParam(rawQuery, "dns")
	if !ok || v == "" {
		return nil, dohBadRequest("missing dns parameter")
	}
	if strings.IndexByte(v, '%') >= 0 {
		u, err := url.QueryUnescape(v)
		if err != nil {
			return nil, dohBadRequest("bad escape in dns parameter")
		}
		v = u
	}
	v = strings.TrimRight(v, "=")
	if len(v) > dohMaxGetParam {
		return nil, &dohError{http.StatusRequestURITooLong, "dns parameter too long"}
	}
	// Decode from a copy at the end of dst when the output cannot reach
	// it, sparing an allocation.
	var src []byte
	if out := base64.RawURLEncoding.DecodedLen(len(v)); out+len(v) <= len(dst) {
		src = dst[len(dst)-len(v):]
		copy(src, v)
	} else {
		src = []byte(v)
	}
	n, err := base64.RawURLEncoding.Decode(dst, src)
	if err != nil {
		return nil, dohBadRequest("dns parameter is not base64url")
	}
	return dst[:n], nil
}

// dohQueryParam returns the raw value of the first parameter key of the
// query string q, without decoding it.
func dohQueryParam(q, key string) (string, bool) {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

// readDoHPost reads the body of a POST request into dst, which holds at
// least 65536 bytes, and returns the message: at most 65535 bytes, else
// 413 (RFC 8484 §4.1 carries one DNS message). length is the declared
// Content-Length, -1 when unknown.
func readDoHPost(body io.Reader, length int64, dst []byte) ([]byte, *dohError) {
	if length > dns.MaxMsgSize {
		return nil, &dohError{http.StatusRequestEntityTooLarge, "body larger than a DNS message"}
	}
	dst = dst[:dns.MaxMsgSize+1]
	n := 0
	for n < len(dst) {
		k, err := body.Read(dst[n:])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, dohBadRequest("read body: " + err.Error())
		}
	}
	if n > dns.MaxMsgSize {
		return nil, &dohError{http.StatusRequestEntityTooLarge, "body larger than a DNS message"}
	}
	return dst[:n], nil
}

// isDNSMessageType reports whether the Content-Type ct is
// application/dns-message, parameters and case aside.
func isDNSMessageType(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), dnsMessageType)
}

// serveHTTP is the handler of every HTTP version.
func (l *DoH) serveHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	h := w.Header()
	h["Access-Control-Allow-Origin"] = l.hdr.cors
	if l.hdr.altSvc != nil && r.ProtoMajor < 3 {
		h["Alt-Svc"] = l.hdr.altSvc
	}
	id, ok := l.paths.match(r.URL.Path)
	if !ok {
		l.fail(w, &dohError{http.StatusNotFound, "not found"})
		return
	}
	buf := getBuf()
	defer putBuf(buf)
	var msg []byte
	var derr *dohError
	switch r.Method {
	case http.MethodPost:
		l.m.query()
		if !isDNSMessageType(r.Header.Get("Content-Type")) {
			derr = &dohError{http.StatusUnsupportedMediaType, "content type is not " + dnsMessageType}
			break
		}
		msg, derr = readDoHPost(r.Body, r.ContentLength, *buf)
	case http.MethodGet:
		l.m.query()
		if wantsJSON(r) {
			l.serveJSON(w, r, id, received)
			return
		}
		msg, derr = decodeDoHGet(r.URL.RawQuery, *buf)
	case http.MethodOptions:
		// CORS preflight (Fetch standard): any origin may query.
		h["Access-Control-Allow-Methods"] = l.hdr.allow
		h["Access-Control-Allow-Headers"] = l.hdr.allowHdrs
		h["Access-Control-Max-Age"] = l.hdr.maxAge
		h["Allow"] = l.hdr.allow
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h["Allow"] = l.hdr.allow
		l.fail(w, &dohError{http.StatusMethodNotAllowed, "method not allowed"})
		return
	}
	if derr != nil {
		l.m.drop(reasonProtocol)
		l.fail(w, derr)
		return
	}
	l.serveWire(w, r, msg, id, received)
}

// serveWire answers the DNS message msg.
func (l *DoH) serveWire(w http.ResponseWriter, r *http.Request, msg []byte, id string, received time.Time) {
	q, act, why := check(msg)
	switch act {
	case actDrop:
		l.m.drop(why)
		l.fail(w, dohBadRequest("not a DNS query: "+why.String()))
		return
	case actFormErr:
		l.m.drop(reasonProtocol)
		l.fail(w, dohBadRequest("malformed DNS query"))
		return
	case actNotImp, actBadVers:
		// A well-formed message: its DNS error reply is the answer.
		out := getBuf()
		defer putBuf(out)
		l.writeDNS(w, reject(msg, q, act, *out))
		l.m.response(rejectRcode(act), false)
		return
	}
	if !l.tryAcquire() {
		l.m.drop(reasonOverload)
		l.fail(w, &dohError{http.StatusServiceUnavailable, "overloaded"})
		return
	}
	defer l.release()
	req := &pipeline.Request{
		Msg:      q,
		Client:   dohRemoteAddr(r),
		Local:    l.addr,
		Listener: pipeline.KindDoH,
		ClientID: id,
		TLS:      r.TLS,
		Received: received,
		MaxSize:  dns.MaxMsgSize,
	}
	out, obuf := l.answer(req, 0)
	if out == nil {
		// The pipeline chose to send nothing: the closest HTTP has is to
		// abort the stream (HTTP/1.1 closes the connection).
		panic(http.ErrAbortHandler)
	}
	defer putBuf(obuf)
	l.writeDNS(w, out)
}

// writeDNS writes the DNS reply b with 200 OK.
func (l *DoH) writeDNS(w http.ResponseWriter, b []byte) {
	h := w.Header()
	vals := new([2]string) // one allocation for both values
	vals[0] = dohCacheControl(b)
	vals[1] = strconv.Itoa(len(b))
	h["Content-Type"] = l.hdr.dnsMessage
	h["Cache-Control"] = vals[0:1:1]
	h["Content-Length"] = vals[1:2:2]
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// fail writes the error e as a short text body.
func (l *DoH) fail(w http.ResponseWriter, e *dohError) {
	h := w.Header()
	h["Content-Type"] = l.hdr.text
	h["X-Content-Type-Options"] = l.hdr.nosniff
	h["Cache-Control"] = l.hdr.noStore
	w.WriteHeader(e.status)
	io.WriteString(w, e.text+"\n")
}

// dohRemoteAddr returns the client address of r, invalid when the server
// gave none that parses.
func dohRemoteAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return unmap(ap)
}

// dohCacheControl returns the Cache-Control value of the DNS reply b (RFC
// 8484 §5.1): max-age of the smallest TTL of its records, OPT aside, where
// an SOA in the authority section counts for the lesser of its TTL and
// its MINIMUM (the negative caching TTL, RFC 2308 §5). A SERVFAIL, a reply
// without records, and a reply that does not parse are "no-store": none
// says how long it holds, and a failure should be retried, not cached.
func dohCacheControl(b []byte) string {
	ttl, ok := dohMinTTL(b)
	if !ok {
		return "no-store"
	}
	var a [32]byte
	return string(strconv.AppendUint(append(a[:0], "max-age="...), uint64(ttl), 10))
}

// dohMinTTL walks the DNS message b and returns the TTL dohCacheControl
// advertises, ok false when it is to be no-store.
func dohMinTTL(b []byte) (ttl uint32, ok bool) {
	if len(b) < headerLen || b[3]&0xF == dns.RcodeServerFailure {
		return 0, false
	}
	u16 := func(i int) int { return int(b[i])<<8 | int(b[i+1]) }
	u32 := func(i int) uint32 { return uint32(u16(i))<<16 | uint32(u16(i+2)) }
	qd, an, ns, ar := u16(4), u16(6), u16(8), u16(10)
	off := headerLen
	for range qd {
		if off = dohSkipName(b, off); off < 0 || off+4 > len(b) {
			return 0, false
		}
		off += 4
	}
	ttl = 1<<31 - 1 // RFC 2181 §8: the largest TTL
	for i := range an + ns + ar {
		if off = dohSkipName(b, off); off < 0 || off+10 > len(b) {
			return 0, false
		}
		typ, t, rdlen := uint16(u16(off)), u32(off+4), u16(off+8)
		off += 10
		if off+rdlen > len(b) {
			return 0, false
		}
		if t > 1<<31-1 {
			t = 0 // RFC 2181 §8
		}
		switch {
		case typ == dns.TypeOPT:
			off += rdlen
			continue
		case typ == dns.TypeSOA && i >= an && i < an+ns && rdlen >= 20:
			t = min(t, u32(off+rdlen-4))
		}
		ttl = min(ttl, t)
		ok = true
		off += rdlen
	}
	return ttl, ok
}

// dohSkipName returns the offset just past the domain name at off in b, -1
// when it runs past the end. A compression pointer ends the name.
func dohSkipName(b []byte, off int) int {
	for off < len(b) {
		c := int(b[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(b) {
				return -1
			}
			return off + 2
		default:
			return -1
		}
	}
	return -1
}
