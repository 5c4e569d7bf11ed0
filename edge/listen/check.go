package listen

import "github.com/miekg/dns"

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
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil || len(m.Question) != 1 {
		return nil, actFormErr
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
