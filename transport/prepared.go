package transport

import (
	"context"
	"encoding/binary"
	"slices"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/internal/dnswire"
)

// A wireExchanger is an Exchanger that can send a query packed once for
// every attempt of a group's exchange and give back the reply as the
// upstream sent it. The UDP exchanger is one.
type wireExchanger interface {
	// exchangeWire is Exchange with q already packed as wire (any
	// message ID: the exchanger writes its own into a copy). When the
	// reply parsed whole and is not truncated it also returns the
	// reply's wire form, a slice it gives up, with q's ID: the same
	// message as the returned *dns.Msg. Otherwise the wire is nil.
	// A nil wire in makes it pack q as Exchange does.
	exchangeWire(ctx context.Context, q *dns.Msg, wire []byte) (*dns.Msg, []byte, error)
}

// packPrepared packs q once for every attempt of an exchange when it is
// a query that the exchangers would send as it is but for its ID: one
// question, no TSIG, and as its only additional record an OPT that
// advertises EDNSBufferSize with no extended RCODE (what the forward
// stage builds). Otherwise, or when q does not pack, it returns nil and
// every attempt builds its own query (upstreamQuery).
//
// Packing writes q's OPT extended RCODE (miekg/dns sets it from
// q.Rcode, here the zero it already holds), so q must not be packed
// concurrently elsewhere.
func packPrepared(q *dns.Msg) []byte {
	if len(q.Question) != 1 || len(q.Extra) != 1 || q.Rcode != 0 {
		return nil
	}
	opt, ok := q.Extra[0].(*dns.OPT)
	if !ok || opt.UDPSize() != EDNSBufferSize || opt.ExtendedRcode() != 0 {
		return nil
	}
	// Packed in a scratch buffer and copied out at its length: PackQuery
	// sizes a buffer of its own for the longest question.
	bp := getMsgBuf()
	defer putMsgBuf(bp)
	wire, err := PackQuery(q, *bp)
	if err != nil {
		return nil
	}
	return slices.Clone(wire)
}

// PackQuery packs the query m into buf (or a new buffer when buf is too
// small), as the exchangers send it. When the last additional record is
// an OPT whose options are all local ones (dns.EDNS0_LOCAL: the ECS, tag,
// trace and loop options the forward stage carries) or padding, the
// options are written here, after miekg/dns packs the rest: it copies
// every such option's data twice per pack, once to measure the message
// and once to write it. The bytes are the same either way.
//
// m's OPT is changed while it is packed and restored before PackQuery
// returns (miekg/dns's own pack writes its extended RCODE too), so m
// must not be used concurrently.
func PackQuery(m *dns.Msg, buf []byte) ([]byte, error) {
	if wire, ok := packSimpleQuery(m, buf); ok {
		return wire, nil
	}
	opt := lastOPT(m)
	if opt == nil || len(opt.Option) == 0 {
		return m.PackBuffer(buf)
	}
	size, ok := localOptionsLen(opt)
	if !ok {
		return m.PackBuffer(buf)
	}
	if size > 0xffff {
		return m.PackBuffer(buf) // and its error
	}
	if len(buf) < maxQuestionQuery {
		// Room for the query and the options, so that appending them
		// does not copy what miekg/dns packed (it would size a buffer
		// of its own to the message).
		buf = make([]byte, maxQuestionQuery+size)
	}
	options := opt.Option
	opt.Option = nil
	wire, err := m.PackBuffer(buf)
	opt.Option = options
	if err != nil {
		return nil, err
	}
	// The OPT was packed last with no options: its RDLENGTH is the
	// message's last two bytes.
	binary.BigEndian.PutUint16(wire[len(wire)-2:], uint16(size))
	return appendLocalOptions(wire, options), nil
}

// localOptionsLen returns the length of opt's options in wire format, and
// false when one is neither a local option (dns.EDNS0_LOCAL) nor padding.
func localOptionsLen(opt *dns.OPT) (int, bool) {
	size := 0
	for _, o := range opt.Option {
		switch o := o.(type) {
		case *dns.EDNS0_LOCAL:
			size += 4 + len(o.Data)
		case *dns.EDNS0_PADDING:
			size += 4 + len(o.Padding)
		default:
			return 0, false
		}
	}
	return size, true
}

// appendLocalOptions appends options, which localOptionsLen accepted, to
// dst in wire format.
func appendLocalOptions(dst []byte, options []dns.EDNS0) []byte {
	for _, o := range options {
		var code uint16
		var data []byte
		switch o := o.(type) {
		case *dns.EDNS0_LOCAL:
			code, data = o.Code, o.Data
		case *dns.EDNS0_PADDING:
			code, data = dns.EDNS0PADDING, o.Padding
		}
		dst = binary.BigEndian.AppendUint16(dst, code)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
		dst = append(dst, data...)
	}
	return dst
}

// packSimpleQuery packs m as miekg/dns's Pack does when it has the shape
// of what the forward stage sends: one question whose name has no
// escapes, no answer or authority records, and as its only additional
// record an OPT owned by the root with local options or padding, RCODE
// 0. It returns false for any other message. The header, the question
// and the OPT are written directly: miekg/dns's general packer costs
// more than the rest of sending a query.
func packSimpleQuery(m *dns.Msg, buf []byte) ([]byte, bool) {
	if len(m.Question) != 1 || len(m.Answer) != 0 || len(m.Ns) != 0 || len(m.Extra) != 1 ||
		m.Rcode != 0 || m.Opcode < 0 || m.Opcode > 0xF {
		return nil, false
	}
	opt, ok := m.Extra[0].(*dns.OPT)
	if !ok || opt.Hdr.Name != "." {
		return nil, false
	}
	size, ok := localOptionsLen(opt)
	if !ok {
		return nil, false
	}
	q := m.Question[0]
	n := dnswire.HeaderLen + len(q.Name) + 1 + 4 + 11 + size
	if size > 0xFFFF || n > 0xFFFF {
		return nil, false
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	nl, ok := dnswire.PackName(q.Name, b[dnswire.HeaderLen:])
	if !ok {
		return nil, false
	}
	bits := uint16(m.Opcode) << 11
	for _, f := range [...]struct {
		set bool
		bit uint16
	}{
		{m.Response, 1 << 15}, {m.Authoritative, 1 << 10}, {m.Truncated, 1 << 9},
		{m.RecursionDesired, 1 << 8}, {m.RecursionAvailable, 1 << 7}, {m.Zero, 1 << 6},
		{m.AuthenticatedData, 1 << 5}, {m.CheckingDisabled, 1 << 4},
	} {
		if f.set {
			bits |= f.bit
		}
	}
	binary.BigEndian.PutUint16(b, m.Id)
	binary.BigEndian.PutUint16(b[2:], bits)
	binary.BigEndian.PutUint64(b[4:], 1<<48|1) // QDCOUNT 1, AN 0, NS 0, AR 1
	off := dnswire.HeaderLen + nl
	binary.BigEndian.PutUint16(b[off:], q.Qtype)
	binary.BigEndian.PutUint16(b[off+2:], q.Qclass)
	off += 4
	b[off] = 0 // the root
	binary.BigEndian.PutUint16(b[off+1:], dns.TypeOPT)
	binary.BigEndian.PutUint16(b[off+3:], opt.Hdr.Class)
	// miekg/dns writes the extended RCODE, m.Rcode>>4 (0), into the TTL.
	binary.BigEndian.PutUint32(b[off+5:], opt.Hdr.Ttl&0x00FFFFFF)
	binary.BigEndian.PutUint16(b[off+9:], uint16(size))
	// b has room for the options: appending them copies nothing else.
	return appendLocalOptions(b[:off+11], opt.Option), true
}

// maxQuestionQuery is the most a query of one question and an OPT with no
// options packs to, with the byte miekg/dns's PackBuffer wants spare: a
// header (12), a name (255), type and class (4), the OPT (11).
const maxQuestionQuery = 12 + 255 + 4 + 11 + 1

// lastOPT returns m's last additional record when it is an OPT.
func lastOPT(m *dns.Msg) *dns.OPT {
	if len(m.Extra) == 0 {
		return nil
	}
	opt, _ := m.Extra[len(m.Extra)-1].(*dns.OPT)
	return opt
}
