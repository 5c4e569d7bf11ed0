package h2

// headerEncoder writes the HPACK (RFC 7541) header blocks of one
// connection's replies. hpack.Encoder looks each field up in two hash
// maps and adds every new value to the dynamic table, so a reply's
// content-length and cache-control each pushed an older entry out: an
// eighth of what a DoH answer cost. A reply's fields are few and their
// kinds known, so this encoder writes them directly:
//
//   - a field marked shared (the same value on every reply: content-type,
//     CORS, alt-svc) is added to the dynamic table the first time, then
//     sent as one index; at most maxShared of them, and only while they
//     fit the table, so none is ever evicted and their indices stay put;
//   - any other field is a literal without indexing (RFC 7541 §6.2.2),
//     its name an index into the static table when it is there.
//
// The dynamic table holds only the shared fields. When the peer limits
// its size (SETTINGS_HEADER_TABLE_SIZE), the next block empties it with a
// size update to 0 and then allows the new size (§4.2, §6.3).
type headerEncoder struct {
	limit   uint32 // the dynamic table's maximum size in effect
	pending bool   // a size update is due at the start of the next block
	shared  [maxShared]sharedField
	n       int    // shared fields in the table
	size    uint32 // their size in the table (§4.1)
}

// maxShared is the most shared fields a connection's table holds.
const maxShared = 8

type sharedField struct{ name, value string }

// defaultTableSize is SETTINGS_HEADER_TABLE_SIZE's initial value, and the
// most this encoder uses whatever the peer allows.
const defaultTableSize = 4096

func newHeaderEncoder() headerEncoder { return headerEncoder{limit: defaultTableSize} }

// setPeerLimit takes the peer's SETTINGS_HEADER_TABLE_SIZE.
func (e *headerEncoder) setPeerLimit(v uint32) {
	v = min(v, defaultTableSize)
	if v == e.limit {
		return
	}
	e.limit, e.pending = v, true
	e.n, e.size = 0, 0
}

// begin starts a header block in dst.
func (e *headerEncoder) begin(dst []byte) []byte {
	if e.pending {
		e.pending = false
		dst = appendInt(dst, 0x20, 5, 0)
		if e.limit > 0 {
			dst = appendInt(dst, 0x20, 5, uint64(e.limit))
		}
	}
	return dst
}

// status appends the :status pseudo-header.
func (e *headerEncoder) status(dst []byte, code int) []byte {
	switch code {
	case 200:
		return append(dst, 0x80|8)
	case 204:
		return append(dst, 0x80|9)
	case 304:
		return append(dst, 0x80|11)
	case 400:
		return append(dst, 0x80|12)
	case 404:
		return append(dst, 0x80|13)
	case 500:
		return append(dst, 0x80|14)
	}
	var b [3]byte
	b[0], b[1], b[2] = byte('0'+code/100%10), byte('0'+code/10%10), byte('0'+code%10)
	dst = appendInt(dst, 0, 4, 8)
	return appendString(dst, string(b[:]))
}

// field appends name: value; shared tells that the value repeats on
// the connection's replies.
func (e *headerEncoder) field(dst []byte, name, value string, shared bool) []byte {
	if shared {
		for i := range e.n {
			if f := e.shared[i]; f.name == name && f.value == value {
				// The newest entry is index 62 (§2.3.3).
				return appendInt(dst, 0x80, 7, uint64(62+e.n-1-i))
			}
		}
		if sz := uint32(32 + len(name) + len(value)); e.n < maxShared && e.size+sz <= e.limit {
			e.shared[e.n] = sharedField{name, value}
			e.n++
			e.size += sz
			return e.literal(dst, 0x40, 6, name, value) // §6.2.1
		}
	}
	return e.literal(dst, 0, 4, name, value)
}

// literal appends a literal field whose first byte has the pattern
// first over its prefix of bits: the name by static index, or a literal
// name after an index of 0.
func (e *headerEncoder) literal(dst []byte, first byte, bits uint, name, value string) []byte {
	if i := staticName(name); i > 0 {
		dst = appendInt(dst, first, bits, uint64(i))
	} else {
		dst = appendString(append(dst, first), name)
	}
	return appendString(dst, value)
}

// appendInt appends v as an HPACK integer with an n-bit prefix (§5.1),
// its first byte's other bits those of first.
func appendInt(dst []byte, first byte, n uint, v uint64) []byte {
	k := uint64(1)<<n - 1
	if v < k {
		return append(dst, first|byte(v))
	}
	dst = append(dst, first|byte(k))
	for v -= k; v >= 128; v >>= 7 {
		dst = append(dst, byte(v&0x7f|0x80))
	}
	return append(dst, byte(v))
}

// appendString appends s as a string literal without Huffman coding
// (§5.2).
func appendString(dst []byte, s string) []byte {
	return append(appendInt(dst, 0, 7, uint64(len(s))), s...)
}

// staticName returns the index of name in the static table (RFC 7541
// Appendix A) among the names a reply may carry, 0 when not there.
func staticName(name string) int {
	switch name {
	case ":status":
		return 8
	case "access-control-allow-origin":
		return 20
	case "age":
		return 21
	case "allow":
		return 22
	case "cache-control":
		return 24
	case "content-encoding":
		return 26
	case "content-length":
		return 28
	case "content-type":
		return 31
	case "date":
		return 33
	case "etag":
		return 34
	case "expires":
		return 36
	case "last-modified":
		return 44
	case "location":
		return 46
	case "retry-after":
		return 53
	case "server":
		return 54
	case "strict-transport-security":
		return 56
	case "vary":
		return 59
	case "via":
		return 60
	}
	return 0
}
