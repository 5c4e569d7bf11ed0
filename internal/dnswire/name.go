// Package dnswire writes the parts of DNS messages that dnsedge's hot
// paths write for nearly every query, where miekg/dns's general packer
// costs more than the rest of the work. Whatever shape it does not
// handle is left to miekg/dns.
package dnswire

const (
	// HeaderLen is the length of a message's header (RFC 1035 §4.1.1).
	HeaderLen = 12
	// MaxName is the longest name in wire format (RFC 1035 §3.1).
	MaxName = 255
)

// PackName writes the fully qualified name s in wire format into buf,
// as dns.PackDomainName does for the names queries nearly always have:
// no escapes, and labels of 1 to 63 bytes. For any other name, or when
// buf is too short, it returns false, and the caller asks miekg/dns
// (which also says what is wrong with a name that does not pack).
func PackName(s string, buf []byte) (int, bool) {
	if s == "." && len(buf) > 0 {
		buf[0] = 0
		return 1, true
	}
	// Without escapes a name of len(s) bytes packs to len(s)+1.
	if len(s) < 2 || s[len(s)-1] != '.' || len(s)+1 > min(len(buf), MaxName) {
		return 0, false
	}
	off, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			return 0, false
		case '.':
			l := i - start
			if l == 0 || l > 63 {
				return 0, false
			}
			buf[off] = byte(l)
			copy(buf[off+1:], s[start:i])
			off += 1 + l
			start = i + 1
		}
	}
	buf[off] = 0
	return off + 1, true
}
