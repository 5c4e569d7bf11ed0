package listen

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"

	"github.com/quic-go/quic-go"
)

// During a binary upgrade the old process still reads the QUIC sockets
// (two processes reading one would take each other's packets) and hands
// the new process the packets that are its: those opening a connection
// and those of the connections the new process made. What belongs to
// whom is read from the packet's invariant header (RFC 8999): every
// server connection ID a process issues starts with the process's
// marker, and the new process's marker is the old one's plus one.

// cidLen is the length of the server connection IDs: the marker, 11
// random bytes and a 4-byte tag.
const cidLen = 16

// cidTagAt is where the tag of a connection ID starts.
const cidTagAt = cidLen - 4

// cidGen issues the connection IDs of a process: its marker, random
// bytes, and a tag (a MAC of the rest under a key only this process
// knows) by which it recognises its own IDs among those clients choose
// for their first Initial packets, which are random and may start with
// any byte. It implements quic.ConnectionIDGenerator.
type cidGen struct {
	marker byte
	key    [32]byte
}

var _ quic.ConnectionIDGenerator = (*cidGen)(nil)

func newCIDGen(marker byte) *cidGen {
	g := &cidGen{marker: marker}
	rand.Read(g.key[:])
	return g
}

func (g *cidGen) tag(b []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, g.key[:])
	m.Write(b)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// GenerateConnectionID returns a new connection ID of this process.
func (g *cidGen) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [cidLen]byte
	b[0] = g.marker
	rand.Read(b[1:cidTagAt])
	t := g.tag(b[:cidTagAt])
	copy(b[cidTagAt:], t[:4])
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen returns cidLen.
func (g *cidGen) ConnectionIDLen() int { return cidLen }

// issued reports whether g issued the connection ID id.
func (g *cidGen) issued(id []byte) bool {
	if len(id) != cidLen || id[0] != g.marker {
		return false
	}
	t := g.tag(id[:cidTagAt])
	return hmac.Equal(t[:4], id[cidTagAt:])
}

// QUIC versions whose long header packet types quicHeader knows.
const (
	quicV1 = 0x00000001
	quicV2 = 0x6b3343cf // RFC 9369
)

// quicHeader is what the invariant header of a QUIC packet tells.
type quicHeader struct {
	long bool
	// opens is set for the long header packets a client sends before
	// it knows the server's connection ID: Initial and 0-RTT.
	opens bool
	dcid  []byte
}

// parseQUICHeader reads the invariant header of the packet p (RFC 8999
// §5): the form bit, for a long header the version, the packet type of
// the versions it knows and the destination connection ID, for a short
// header the destination connection ID of length cidLen. ok is false for
// what is no QUIC packet of a known version.
func parseQUICHeader(p []byte) (h quicHeader, ok bool) {
	if len(p) == 0 {
		return h, false
	}
	if p[0]&0x80 == 0 { // short header
		if len(p) < 1+cidLen {
			return h, false
		}
		return quicHeader{dcid: p[1 : 1+cidLen]}, true
	}
	if len(p) < 6 {
		return h, false
	}
	h.long = true
	typ := p[0] >> 4 & 0x3
	switch binary.BigEndian.Uint32(p[1:5]) {
	case quicV1:
		h.opens = typ == 0 || typ == 1 // Initial, 0-RTT
	case quicV2:
		h.opens = typ == 1 || typ == 2 // Initial, 0-RTT
	default: // version negotiation, or a version quic-go does not speak
		return h, false
	}
	n := int(p[5])
	if n > 20 || len(p) < 6+n {
		return h, false
	}
	h.dcid = p[6 : 6+n]
	return h, true
}

// forwardsTo reports whether the packet p goes to the new process, whose
// connection IDs start with next, rather than to this one, whose IDs own
// issues: packets opening a connection (Initial and 0-RTT, unless they
// carry an ID this process issued: its handshakes in progress) and those
// carrying an ID of the new process. Anything else, garbage included,
// stays here.
func forwardsTo(p []byte, own *cidGen, next byte) bool {
	h, ok := parseQUICHeader(p)
	if !ok || len(h.dcid) == 0 {
		return false
	}
	if h.opens {
		return !own.issued(h.dcid)
	}
	return len(h.dcid) == cidLen && h.dcid[0] == next
}
