package listen

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// action is what a listener does with a message it read.
type action uint8

const (
	actServe   action = iota // hand it to the pipeline
	actDrop                  // send nothing: junk must not be answered
	actFormErr               // answer FORMERR (RFC 1035 §4.1.1)
	actNotImp                // answer NOTIMP: opcode other than QUERY
	actBadVers               // answer BADVERS: EDNS version above 0 (RFC 6891 §6.1.3)
)

func (a action) String() string {
	return [...]string{"serve", "drop", "formerr", "notimp", "badvers"}[a]
}

const (
	headerLen = 12
	bitQR     = 1 << 15
)

// checkHeader looks at the fixed header of b only, so it is cheap enough
// for a read loop. Junk is dropped silently so that a forged source gets
// nothing to amplify; a sane header with a shape no query has is rejected
// (miekg/dns acceptfunc.go).
func checkHeader(b []byte) (action, reason) {
	if len(b) < headerLen {
		return actDrop, reasonShort
	}
	bits := uint16(b[2])<<8 | uint16(b[3])
	if bits&bitQR != 0 {
		return actDrop, reasonResponse
	}
	if op := int(bits>>11) & 0xF; op != dns.OpcodeQuery {
		return actNotImp, 0
	}
	qd := uint16(b[4])<<8 | uint16(b[5])
	an := uint16(b[6])<<8 | uint16(b[7])
	ns := uint16(b[8])<<8 | uint16(b[9])
	ar := uint16(b[10])<<8 | uint16(b[11])
	// A query has one question, no answer, and at most an OPT and a TSIG
	// in the additional section.
	if qd != 1 || an != 0 || ns != 0 || ar > 2 {
		return actFormErr, 0
	}
	return actServe, 0
}

// parseQuery unpacks b, whose header passed checkHeader, and checks what
// only the body shows. The message is returned when the action is actServe
// or actBadVers. It never keeps a reference to b.
func parseQuery(b []byte) (*dns.Msg, action) {
	if !wholeQuestion(b) {
		return nil, actFormErr
	}
	m := unpackCommon(b)
	if m == nil {
		m = new(dns.Msg)
		if err := m.Unpack(b); err != nil || len(m.Question) != 1 {
			return nil, actFormErr
		}
	}
	var opts int
	var opt *dns.OPT
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opts++
			opt = o
		}
	}
	switch {
	case opts > 1 || opt != nil && opt.Hdr.Name != ".":
		return nil, actFormErr // RFC 6891 §6.1.1
	case opt != nil && opt.Version() != 0:
		return m, actBadVers
	}
	return m, actServe
}

// wholeQuestion reports whether the question of b is all there, its name
// written out label by label. Unpack takes a question cut short (no
// class) and a name that points into the header, and the question of a
// reply would then be longer than the query: a question starts right
// after the header, where nothing before it is a name to point to.
func wholeQuestion(b []byte) bool {
	off := headerLen
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off+1+4 <= len(b)
		case l&0xC0 != 0:
			return false // a compression pointer or an extended label type
		}
		off += 1 + l
	}
	return false
}

// parsedQuery holds a query unpacked by unpackCommon: the message, its
// question, its OPT and, when short enough, the bytes of its name in one
// allocation.
type parsedQuery struct {
	msg   dns.Msg
	q     [1]dns.Question
	extra [1]dns.RR
	opt   dns.OPT
	name  [qnameBuf]byte // q[0].Name's bytes, when unpackQName read it
}

// Header bits of a message (RFC 1035 §4.1.1, RFC 4035 §3.2).
const (
	bitAA = 1 << 10
	bitTC = 1 << 9
	bitRD = 1 << 8
	bitRA = 1 << 7
	bitZ  = 1 << 6
	bitAD = 1 << 5
	bitCD = 1 << 4
)

// unpackCommon unpacks b, whose header passed checkHeader, when it has
// the shape of nearly every query: the question whole, then nothing or an
// OPT record owned by the root with no options, then nothing or bytes
// that Unpack ignores too. The result is what dns.Msg.Unpack makes of b,
// in two allocations instead of six. Any other shape returns nil: the
// caller unpacks with dns.Msg.Unpack.
func unpackCommon(b []byte) *dns.Msg {
	ar := uint16(b[10])<<8 | uint16(b[11])
	if ar > 1 {
		return nil
	}
	p := new(parsedQuery)
	name, off, ok := unpackQName(b, headerLen, &p.name)
	if !ok {
		var err error
		if name, off, err = dns.UnpackDomainName(b, headerLen); err != nil {
			return nil
		}
	}
	if off+4 > len(b) {
		return nil
	}
	p.q[0] = dns.Question{Name: name, Qtype: binary.BigEndian.Uint16(b[off:]), Qclass: binary.BigEndian.Uint16(b[off+2:])}
	off += 4
	m := &p.msg
	bits := binary.BigEndian.Uint16(b[2:])
	m.MsgHdr = dns.MsgHdr{
		Id:                 binary.BigEndian.Uint16(b),
		Response:           bits&bitQR != 0,
		Opcode:             int(bits>>11) & 0xF,
		Authoritative:      bits&bitAA != 0,
		Truncated:          bits&bitTC != 0,
		RecursionDesired:   bits&bitRD != 0,
		RecursionAvailable: bits&bitRA != 0,
		Zero:               bits&bitZ != 0,
		AuthenticatedData:  bits&bitAD != 0,
		CheckingDisabled:   bits&bitCD != 0,
		Rcode:              int(bits & 0xF),
	}
	m.Question = p.q[:]
	if ar == 0 {
		return m
	}
	// Root owner, TYPE, CLASS, TTL, RDLENGTH (RFC 6891 §6.1.2).
	if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT ||
		binary.BigEndian.Uint16(b[off+9:]) != 0 {
		return nil
	}
	p.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT,
		Class: binary.BigEndian.Uint16(b[off+3:]), Ttl: binary.BigEndian.Uint32(b[off+5:])}
	p.extra[0] = &p.opt
	m.Extra = p.extra[:]
	m.Rcode |= p.opt.ExtendedRcode()
	return m
}

// check runs checkHeader and then parseQuery: the whole decision a
// listener makes about one message before the pipeline sees it.
func check(b []byte) (*dns.Msg, action, reason) {
	act, why := checkHeader(b)
	if act != actServe {
		return nil, act, why
	}
	m, act := parseQuery(b)
	return m, act, 0
}

// udpSize returns the largest UDP reply the client q accepts: its EDNS
// buffer size clamped to [512, 65535], or 512 without EDNS (RFC 6891 §6.2.5).
func udpSize(q *dns.Msg) int {
	opt := q.IsEdns0()
	if opt == nil {
		return dns.MinMsgSize
	}
	// Never more than EDNSSize, whatever the client offers: a larger UDP
	// answer may be fragmented, and fragments are what gets lost on the
	// way (DNS Flag Day 2020; RFC 9715). A client that needs more is told
	// TC=1 and retries over TCP.
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), EDNSSize)
}
