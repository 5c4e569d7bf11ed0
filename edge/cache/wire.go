package cache

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/dnswire"
)

// Errors of the wire walker. They only reach tests: a message the walker
// cannot follow is simply not cached.
var (
	errTruncated = errors.New("message truncated")
	errLabel     = errors.New("unknown label type")
	errTooLong   = errors.New("message longer than 65535 bytes")
)

const (
	headerLen = dnswire.HeaderLen
	rdBit     = 0x01 // RD in the third header byte
)

// ttlOffsets walks the DNS message msg (RFC 1035 §4.1) and appends to dst
// the offset of the TTL field of every resource record except OPT, whose
// TTL field holds the extended RCODE and flags instead (RFC 6891 §6.1.3).
//
// It skips names without following compression pointers and skips RDATA by
// its RDLENGTH, so it makes one pass over the message and allocates nothing
// beyond growing dst. It fails when a section runs past the end of msg, a
// label has a type other than length or pointer (RFC 6891 §5), or msg is
// longer than a DNS message can be. Bytes after the last record are
// ignored.
func ttlOffsets(msg []byte, dst []uint16) ([]uint16, error) {
	if len(msg) > 0xFFFF {
		return dst, errTooLong
	}
	if len(msg) < headerLen {
		return dst, errTruncated
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) +
		int(binary.BigEndian.Uint16(msg[8:])) +
		int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	var err error
	for range qd {
		if off, err = skipName(msg, off); err != nil {
			return dst, err
		}
		if off += 4; off > len(msg) { // QTYPE, QCLASS
			return dst, errTruncated
		}
	}
	for range rrs {
		if off, err = skipName(msg, off); err != nil {
			return dst, err
		}
		if off+10 > len(msg) { // TYPE, CLASS, TTL, RDLENGTH
			return dst, errTruncated
		}
		if binary.BigEndian.Uint16(msg[off:]) != dns.TypeOPT {
			dst = append(dst, uint16(off+4))
		}
		if off += 10 + int(binary.BigEndian.Uint16(msg[off+8:])); off > len(msg) {
			return dst, errTruncated
		}
	}
	return dst, nil
}

// skipName returns the offset just past the name starting at off: past its
// root label, or past the compression pointer that ends it (RFC 1035
// §4.1.4). The pointer is not followed.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errTruncated
		}
		c := msg[off]
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			off += 1 + int(c)
		case 0xC0:
			if off+2 > len(msg) {
				return 0, errTruncated
			}
			return off + 2, nil
		default:
			return 0, errLabel
		}
	}
}

// appendAnswer appends the stored message of e to dst, made into the answer
// to a query: ID and RD copied from the query, the question name written in
// the query's case (clients that randomise case check it, and names
// compressed against it follow), and every TTL lowered by age seconds,
// never below zero. qname is the query's name in wire format; it has the
// length of the stored one because both lower-case to the same key.
func (e *entry) appendAnswer(dst []byte, age uint32, id uint16, rd bool, qname []byte) []byte {
	start := len(dst)
	dst = append(dst, e.msg()...)
	b := dst[start:]
	binary.BigEndian.PutUint16(b, id)
	if rd {
		b[2] |= rdBit
	} else {
		b[2] &^= rdBit
	}
	copy(b[headerLen:], qname)
	for _, off := range e.ttls() {
		p := b[off : off+4]
		t := binary.BigEndian.Uint32(p)
		if t > age {
			t -= age
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(p, t)
	}
	return dst
}

// sameQuestion reports whether msg, a packed reply, has exactly the one
// question that key was built from: the key starts with the lower-cased
// wire name (nameLen bytes), then QTYPE and QCLASS.
func sameQuestion(msg, key []byte, nameLen int) bool {
	end := headerLen + nameLen + 4
	if len(msg) < end || len(key) < nameLen+4 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return false
	}
	for i, c := range msg[headerLen : headerLen+nameLen] {
		if lower(c) != key[i] {
			return false
		}
	}
	return string(msg[headerLen+nameLen:end]) == string(key[nameLen:nameLen+4])
}

// lower maps ASCII upper case to lower case (RFC 4343). Length bytes are
// below 64 and never change.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
