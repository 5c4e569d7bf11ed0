package listen

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/miekg/dns"
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
