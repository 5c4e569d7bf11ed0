package l2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
)

// A Value is one answer as the shared cache holds it: the packed reply
// (ID 0, TTLs as they were when it was stored), when it was stored, how
// long it stays fresh and how long past that it may be served stale, and
// what the cache that stored it knew about its authenticity.
type Value struct {
	// Msg is the packed reply; nil in a Lookup result for a key that
	// held nothing usable.
	Msg []byte
	// Stored is when the answer was stored, in Unix nanoseconds.
	Stored int64
	// TTL is how long, in seconds, the answer stays fresh after Stored;
	// Stale how long after that it may be served stale (RFC 8767).
	TTL, Stale uint32
	// Authentic tells whether the answer was authentic (AD is set from
	// it per query); DNSSEC is the validation verdict it was stored
	// with (pipeline.DNSSECVerdict).
	Authentic bool
	DNSSEC    uint8
}

// The encoded value: a version byte, a flag byte, the DNSSEC verdict,
// Stored (8 bytes), TTL and Stale (4 bytes each), the message length (2
// bytes) and the message, then an HMAC-SHA256 over the Redis key and
// everything before the MAC. The key is part of what the MAC covers, so a
// value copied under another key (another tenant, DO or CD bit, route or
// ECS prefix) fails the check like a forged one.
const (
	valueVersion   = 1
	valueHeaderLen = 1 + 1 + 1 + 8 + 4 + 4 + 2
	macLen         = sha256.Size
	flagAuthentic  = 1
	// maxMsg is the largest DNS message (RFC 1035 §4.2.2: a 16-bit length).
	maxMsg = 0xFFFF
	// headerLen is the length of a DNS message header (RFC 1035 §4.1.1).
	headerLen = 12
)

// Errors Decode returns, one per reason a value is rejected; they name
// the dnsedge_l2_rejected_total reason label.
var (
	ErrShort    = errors.New("value too short")
	ErrVersion  = errors.New("unknown value version")
	ErrLength   = errors.New("value length does not match its message length")
	ErrMAC      = errors.New("value MAC does not verify")
	ErrQuestion = errors.New("value answers another question")
)

// A Sealer signs and checks values with the fleet key. It is safe for
// concurrent use.
type Sealer struct {
	key []byte
}

// NewSealer returns a Sealer for the fleet key key, which it copies.
func NewSealer(key []byte) *Sealer { return &Sealer{key: append([]byte(nil), key...)} }

func (s *Sealer) mac(h hash.Hash, redisKey string, body []byte) []byte {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(redisKey)))
	h.Write(n[:])
	h.Write([]byte(redisKey))
	h.Write(body)
	return h.Sum(nil)
}

// Seal returns v encoded and signed for storage under redisKey. It
// returns nil when v.Msg is empty or longer than a DNS message.
func (s *Sealer) Seal(redisKey string, v Value) []byte {
	if len(v.Msg) < headerLen || len(v.Msg) > maxMsg {
		return nil
	}
	b := make([]byte, valueHeaderLen, valueHeaderLen+len(v.Msg)+macLen)
	b[0] = valueVersion
	if v.Authentic {
		b[1] |= flagAuthentic
	}
	b[2] = v.DNSSEC
	binary.BigEndian.PutUint64(b[3:], uint64(v.Stored))
	binary.BigEndian.PutUint32(b[11:], v.TTL)
	binary.BigEndian.PutUint32(b[15:], v.Stale)
	binary.BigEndian.PutUint16(b[19:], uint16(len(v.Msg)))
	b = append(b, v.Msg...)
	return append(b, s.mac(hmac.New(sha256.New, s.key), redisKey, b)...)
}

// Open decodes b, the value stored under redisKey, checks its MAC and
// that its message has exactly one question, the one question names
// (the lower-cased wire name, then QTYPE and QCLASS, as a cache key
// starts), and returns it. The returned Msg shares b's memory.
func (s *Sealer) Open(redisKey string, question, b []byte) (Value, error) {
	if len(b) < valueHeaderLen+macLen {
		return Value{}, ErrShort
	}
	if b[0] != valueVersion {
		return Value{}, ErrVersion
	}
	n := int(binary.BigEndian.Uint16(b[19:]))
	if len(b) != valueHeaderLen+n+macLen {
		return Value{}, ErrLength
	}
	body, sum := b[:valueHeaderLen+n], b[valueHeaderLen+n:]
	if !hmac.Equal(sum, s.mac(hmac.New(sha256.New, s.key), redisKey, body)) {
		return Value{}, ErrMAC
	}
	v := Value{
		Msg:       body[valueHeaderLen:],
		Authentic: b[1]&flagAuthentic != 0,
		DNSSEC:    b[2],
		Stored:    int64(binary.BigEndian.Uint64(b[3:])),
		TTL:       binary.BigEndian.Uint32(b[11:]),
		Stale:     binary.BigEndian.Uint32(b[15:]),
	}
	if !sameQuestion(v.Msg, question) {
		return Value{}, ErrQuestion
	}
	return v, nil
}

// sameQuestion reports whether msg, a packed DNS message, has exactly one
// question and it is q: a lower-cased wire name followed by QTYPE and
// QCLASS. The name is compared without case (RFC 4343).
func sameQuestion(msg, q []byte) bool {
	if len(q) < 5 || len(msg) < headerLen+len(q) || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return false
	}
	for i, c := range msg[headerLen : headerLen+len(q)-4] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != q[i] {
			return false
		}
	}
	return string(msg[headerLen+len(q)-4:headerLen+len(q)]) == string(q[len(q)-4:])
}

// reason names the rejected_total label of a Decode error.
func reason(err error) string {
	switch {
	case errors.Is(err, ErrMAC):
		return "mac"
	case errors.Is(err, ErrQuestion):
		return "question"
	case errors.Is(err, ErrVersion):
		return "version"
	}
	return "format"
}
