package listen

import "unsafe"

// qnameBuf is the room in a parsedQuery for its question's name.
const qnameBuf = 64

// plainByte marks the bytes dns.UnpackDomainName copies as they are:
// letters, digits, '-' and '_', which nearly every query name is made
// of. It escapes others; they are left to it.
var plainByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	t['-'], t['_'] = true, true
	return t
}()

// unpackQName reads the uncompressed name at b[off:] into buf, and
// returns it as a string that shares buf's memory, and the offset after
// it: what dns.UnpackDomainName returns, without its 1 KiB scratch
// buffer and the string copied out of it. It returns false for a name
// with any other byte, a compression pointer, a label cut short, or one
// longer than buf holds; the caller asks miekg/dns then. buf must not be
// written afterwards.
func unpackQName(b []byte, off int, buf *[qnameBuf]byte) (string, int, bool) {
	n := 0
	for {
		if off >= len(b) {
			return "", 0, false
		}
		l := int(b[off])
		off++
		if l == 0 {
			break
		}
		// l > 63: a pointer or an extended label type.
		if l > 63 || off+l > len(b) || n+l+1 > len(buf) {
			return "", 0, false
		}
		for _, c := range b[off : off+l] {
			if !plainByte[c] {
				return "", 0, false
			}
		}
		n += copy(buf[n:], b[off:off+l])
		buf[n] = '.'
		n++
		off += l
	}
	if n == 0 {
		return ".", off, true
	}
	return unsafe.String(&buf[0], n), off, true
}
