package listen

import (
	"encoding/binary"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// optLen is the length of the OPT record finish gives a client: root
// owner, type, class (the UDP size), TTL (extended RCODE, version, DO)
// and an empty RDATA.
const optLen = 1 + 2 + 2 + 4 + 2

// answerCached is answer's short way for an answer from the cache that
// came with its wire form (pipeline.CachedReply), a hit or a miss the
// upstream answered: the wire copied after off free bytes of a pooled
// buffer, with the query's ID, the header bits finish would give m, and
// the OPT finish (and padded, on an encrypted listener) would give the
// client, instead of building the reply and packing it. The message is
// the one the long way packs; for a hit, so are the bytes (a miss keeps
// the upstream's order and compression). It returns nil when the reply must
// go the long way: no wire form, or another stage replaced the cache's
// answer, or the reply is signed, or it does not fit the client's size
// (and is truncated).
func (c *core) answerCached(req *pipeline.Request, m *dns.Msg, off int) ([]byte, *[]byte) {
	w := req.Cached.WireOf(m)
	if w == nil || req.Signer != nil || len(w) < headerLen || m.Rcode > 0xF {
		return nil, nil
	}
	q := req.Msg
	qopt := q.IsEdns0()
	n, pad := len(w), -1
	if qopt != nil {
		if binary.BigEndian.Uint16(w[10:]) == 0xffff {
			return nil, nil
		}
		n += optLen
		if c.pad {
			// RFC 7830 padding to a multiple of PaddingBlock, as padded
			// does: an option of 4 bytes and pad zeros.
			n += 4
			pad = (PaddingBlock - n%PaddingBlock) % PaddingBlock
			n += pad
		}
	}
	if n > req.MaxSize {
		return nil, nil
	}
	buf := getBufFor(off + n)
	b := (*buf)[off : off+n]
	copy(b, w)
	binary.BigEndian.PutUint16(b, q.Id)
	binary.BigEndian.PutUint16(b[2:], replyBits(m, q, qopt))
	if qopt != nil {
		binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
		o := b[len(w):]
		o[0] = 0 // the root
		binary.BigEndian.PutUint16(o[1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(o[3:], EDNSSize)
		var ttl uint32 // extended RCODE 0 (m's fits the header), version 0
		if qopt.Do() {
			ttl |= 1 << 15
		}
		binary.BigEndian.PutUint32(o[5:], ttl)
		binary.BigEndian.PutUint16(o[9:], 0)
		if pad >= 0 {
			binary.BigEndian.PutUint16(o[9:], uint16(4+pad))
			binary.BigEndian.PutUint16(o[11:], dns.EDNS0PADDING)
			binary.BigEndian.PutUint16(o[13:], uint16(pad))
			clear(o[15:])
		}
	}
	c.m.response(m.Rcode, false)
	return b, buf
}

// replyBits is the second 16 bits of the header of the reply finish
// makes of m for the query q (whose OPT is qopt): m's, but for QR set,
// q's opcode and CD bit, and AD only when q had AD or DO.
func replyBits(m, q *dns.Msg, qopt *dns.OPT) uint16 {
	bits := uint16(1<<15) | uint16(q.Opcode)<<11 | uint16(m.Rcode&0xF)
	for _, f := range [...]struct {
		set bool
		bit uint16
	}{
		{m.Authoritative, 1 << 10},
		{m.Truncated, 1 << 9},
		{m.RecursionDesired, 1 << 8},
		{m.RecursionAvailable, 1 << 7},
		{m.Zero, 1 << 6},
		{m.AuthenticatedData && (q.AuthenticatedData || qopt != nil && qopt.Do()), 1 << 5},
		{q.CheckingDisabled, 1 << 4},
	} {
		if f.set {
			bits |= f.bit
		}
	}
	return bits
}
