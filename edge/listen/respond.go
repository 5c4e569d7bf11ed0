package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/miekg/dns"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// EDNSSize is the UDP payload size dnsedge advertises to clients (DNS Flag
// Day 2020: fits the IPv6 minimum MTU without fragmentation).
const EDNSSize = 1232

// Finish turns what a handler returned for req into the reply to write, the
// same way on every listener:
//
//   - err is pipeline.ErrDrop: nothing is sent (send is false);
//   - any other err: pipeline.ErrorReply (SERVFAIL or the *pipeline.Error's
//     RCODE, with an EDE when the query had EDNS);
//   - m and err both nil: a handler bug, logged, answered SERVFAIL;
//   - the reply gets the query's ID, QR set, the query's CD bit (RFC 4035
//     §3.1.6: whoever answered, an upstream that does not echo it
//     included), and the question when m has none;
//   - AD stays set only when the query had DO or AD (RFC 6840 §5.8):
//     whether the answer is authentic is the handler's to say (the cache
//     and DNSSEC validation set AD per query), whether the client may see
//     it is decided here for every source;
//   - EDNS toward the client: when the query had an OPT the reply has
//     exactly one, advertising EDNSSize, with the query's DO bit and only
//     the Extended DNS Error options (RFC 8914) of the handler's OPT;
//     options meant for an upstream hop (cookies, padding, ...) are left
//     out. Without an OPT in the query the reply has none (RFC 6891 §7);
//   - finally, when it does not fit req.MaxSize (less the TSIG record
//     req.Signer will add, if any), it becomes the header with TC set,
//     the question and the OPT only (see truncated).
//
// Finish does not modify m or req: the reply is a shallow copy that shares
// m's records, which it only reads (m may be shared with a cache, see
// pipeline.Handler). Its OPT and additional section are its own, so it may
// be packed. Nothing is logged when log is nil.
func Finish(req *pipeline.Request, m *dns.Msg, err error, log *slog.Logger) (reply *dns.Msg, send bool) {
	rb := new(replyBuf)
	reply, send = finish(req, m, err, log, rb)
	if send && !relayed(req, reply) && reply.Len() > replyLimit(req) {
		truncated(reply, req.Msg.IsEdns0(), rb)
	}
	return reply, send
}

// replyLimit is the largest reply to req that may be packed: its
// MaxSize, less the TSIG record req.Signer will add.
func replyLimit(req *pipeline.Request) int {
	if req.Signer != nil {
		return req.MaxSize - req.Signer.Overhead()
	}
	return req.MaxSize
}

// replyBuf holds what Finish builds for one reply, so that a listener can
// reuse it (replyBufs) once the reply is packed.
type replyBuf struct {
	msg   dns.Msg
	opt   dns.OPT
	extra [4]dns.RR    // the additional section when it fits
	ede   [2]dns.EDNS0 // the OPT's options when they fit
}

var replyBufs = sync.Pool{New: func() any { return new(replyBuf) }}

// getReplyBuf returns a cleared replyBuf; putReplyBuf takes it back once
// nothing refers to its reply any more.
func getReplyBuf() *replyBuf { return replyBufs.Get().(*replyBuf) }

func putReplyBuf(rb *replyBuf) {
	*rb = replyBuf{} // drop the references to records
	replyBufs.Put(rb)
}

// finish is Finish building the reply in rb, which must be cleared, but
// for the last step: a relayed answer is cut to fit here, any other is
// left to the caller, which packs it and cuts it only when it does not
// fit (see core.answer), so that the common reply is measured once, by
// packing it.
func finish(req *pipeline.Request, m *dns.Msg, err error, log *slog.Logger, rb *replyBuf) (reply *dns.Msg, send bool) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := req.Msg
	switch {
	case errors.Is(err, pipeline.ErrDrop):
		return nil, false
	case err != nil:
		m = pipeline.ErrorReply(q, err)
	case m == nil:
		log.Error("handler returned neither an answer nor an error",
			"question", question(req), "client", req.Client.String(), "trace_id", req.Trace())
		m = pipeline.ErrorReply(q, errNoAnswer)
	}
	r := &rb.msg
	*r = *m
	r.Id = q.Id
	r.Response = true
	r.Opcode = q.Opcode
	if len(r.Question) == 0 {
		r.Question = q.Question
	}
	qopt := q.IsEdns0()
	if relayed(req, m) {
		// An answer signed by an upstream that holds the query's key,
		// relayed as it came (RFC 8945 §5.5): any change would break
		// its MAC, the CD and AD bits included. Names are compressed as
		// the upstream did.
		r.Compress = true
		if r.Len() > req.MaxSize {
			truncated(r, qopt, rb)
		}
		return r, true
	}
	r.CheckingDisabled = q.CheckingDisabled
	if !q.AuthenticatedData && (qopt == nil || !qopt.Do()) {
		r.AuthenticatedData = false
	}
	r.Extra = clientExtra(qopt, m.Extra, rb)
	if r.Rcode > 0xF && qopt == nil {
		// An extended RCODE needs an OPT the client cannot take.
		r.Rcode = dns.RcodeServerFailure
	}
	if req.Signer != nil {
		// The reply is signed: a TSIG the reply carries (an upstream's)
		// goes, the listener's takes its place.
		if n := len(r.Extra); n > 0 && r.Extra[n-1].Header().Rrtype == dns.TypeTSIG {
			r.Extra = r.Extra[: n-1 : n-1]
		}
	}
	return r, true
}

// relayed reports whether m is an answer to relay unchanged: signed by
// an upstream (a trailing TSIG), for a query whose TSIG dnsedge did not
// verify (it holds no such key, pipeline.TSIGBadKey).
func relayed(req *pipeline.Request, m *dns.Msg) bool {
	return req.TSIG == pipeline.TSIGBadKey && req.Signer == nil && m.IsTsig() != nil
}

// truncated makes r, which does not fit the client's size, the answer of
// RFC 2181 §9 that sends the client to TCP: the header with TC set, the
// question, and when the client speaks EDNS (qopt not nil) a bare OPT of
// rb. No record of the answer goes: an answer cut to what fits would make
// a small spoofed UDP query worth up to the client's whole buffer size
// (16 to 27 bytes out per byte in for a big TXT or DNSKEY RRset), while
// this one is never bigger than the query's own question and OPT. A
// signed query's truncated reply is signed by the listener all the same
// (RFC 8945 §5.3: the question and the TSIG record, TC set).
func truncated(r *dns.Msg, qopt *dns.OPT, rb *replyBuf) {
	r.Truncated = true
	r.Answer, r.Ns, r.Extra = nil, nil, nil
	if qopt == nil {
		return
	}
	opt := &rb.opt
	*opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(EDNSSize)
	opt.SetDo(qopt.Do())
	rb.extra[0] = opt
	r.Extra = rb.extra[:1]
}

// clientExtra returns the additional section to send to a client whose
// query carried qopt (nil without EDNS): extra without its OPT records,
// plus, when the client speaks EDNS, one OPT of our own (rb.opt) holding
// the EDE options of the removed ones. The OPT goes before a trailing
// TSIG, which must stay last (RFC 8945 §5.1). extra is not modified; the
// new section uses rb's arrays when it fits them.
func clientExtra(qopt *dns.OPT, extra []dns.RR, rb *replyBuf) []dns.RR {
	if qopt == nil {
		has := false
		for _, rr := range extra {
			if rr.Header().Rrtype == dns.TypeOPT {
				has = true
				break
			}
		}
		if !has {
			return extra
		}
	}
	out := rb.extra[:0]
	if len(extra)+1 > len(rb.extra) {
		out = make([]dns.RR, 0, len(extra)+1)
	}
	ede := rb.ede[:0]
	for _, rr := range extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			out = append(out, rr)
			continue
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				ede = append(ede, e)
			}
		}
	}
	if qopt == nil {
		return out
	}
	opt := &rb.opt
	*opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	if len(ede) > 0 {
		opt.Option = ede
	}
	opt.SetUDPSize(EDNSSize)
	opt.SetDo(qopt.Do())
	if n := len(out); n > 0 && out[n-1].Header().Rrtype == dns.TypeTSIG {
		return append(out[:n-1], opt, out[n-1])
	}
	return append(out, opt)
}

// maxFrame is the largest DNS message, plus the TCP length prefix.
const maxFrame = 2 + dns.MaxMsgSize

// Pooled buffers for queries and replies come in three sizes, so that
// what a query in flight holds follows its size: a 40-byte query or a
// 200-byte reply does not pin 64 KiB while it waits for an upstream.
// Readers read into a buffer of maxFrame bytes and keep it, handing on a
// copy in the smallest buffer that holds the datagram (see getBufFor).
var bufSizes = [...]int{1024, 4096 + 2, maxFrame}

var bufPools [len(bufSizes)]sync.Pool

func init() {
	for i, n := range bufSizes {
		bufPools[i].New = func() any {
			b := make([]byte, n)
			return &b
		}
	}
}

// getBuf returns a buffer of maxFrame bytes.
func getBuf() *[]byte { return bufPools[len(bufSizes)-1].Get().(*[]byte) }

// getBufFor returns the smallest pooled buffer of at least n bytes.
func getBufFor(n int) *[]byte {
	for i, size := range bufSizes {
		if n <= size {
			return bufPools[i].Get().(*[]byte)
		}
	}
	b := make([]byte, n)
	return &b
}

// putBuf gives back a buffer from getBuf or getBufFor, to the pool of its
// size.
func putBuf(b *[]byte) {
	for i, size := range bufSizes {
		if len(*b) == size {
			bufPools[i].Put(b)
			return
		}
	}
}

// copyBuf returns a pooled copy of b, in the smallest buffer that holds it.
func copyBuf(b []byte) *[]byte {
	c := getBufFor(len(b))
	copy(*c, b)
	return c
}

// errTooLong says a packed reply does not fit the client's size.
var errTooLong = errors.New("reply exceeds the client's size")

// packReply packs the finished reply to req into buf, signed when the
// query asked for it (req.Signer), and checks that it fits req.MaxSize
// (errTooLong when not).
func packReply(req *pipeline.Request, m *dns.Msg, buf []byte) ([]byte, error) {
	if req.Signer == nil {
		return pack(m, buf, req.MaxSize)
	}
	b, err := req.Signer.Sign(m)
	if err != nil {
		return nil, fmt.Errorf("sign reply: %w", err)
	}
	if len(b) > req.MaxSize {
		return nil, fmt.Errorf("signed reply of %d bytes: %w (%d)", len(b), errTooLong, req.MaxSize)
	}
	if len(b) <= len(buf) {
		b = buf[:copy(buf, b)]
	}
	return b, nil
}

// pack packs m into buf (allocating only if buf is too small) and checks
// that the result fits limit.
func pack(m *dns.Msg, buf []byte, limit int) ([]byte, error) {
	b, err := m.PackBuffer(buf)
	if err != nil {
		return nil, fmt.Errorf("pack reply: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("packed reply of %d bytes: %w (%d)", len(b), errTooLong, limit)
	}
	return b, nil
}

// reject writes into buf the reply to a message the listener refuses to
// serve, and returns it; act is actFormErr, actNotImp or actBadVers, q the
// raw message (which passed the length check) and m its parse, needed for
// actBadVers only. The reply is never longer than q, so it cannot be used
// for amplification: FORMERR and NOTIMP are the bare header with the ID,
// opcode and RD bit of q; BADVERS echoes the question with an OPT of
// version 0 (RFC 6891 §6.1.3).
func reject(q []byte, m *dns.Msg, act action, buf []byte) []byte {
	if act == actBadVers && m != nil {
		r := new(dns.Msg)
		r.SetRcode(m, dns.RcodeBadVers)
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(EDNSSize)
		opt.SetDo(m.IsEdns0().Do())
		r.Extra = []dns.RR{opt}
		if b, err := r.PackBuffer(buf); err == nil && len(b) <= len(q) {
			return b
		}
		act = actFormErr
	}
	rcode := dns.RcodeFormatError
	if act == actNotImp {
		rcode = dns.RcodeNotImplemented
	}
	b := buf[:headerLen]
	clear(b)
	b[0], b[1] = q[0], q[1]
	const opcodeRD = 0x7800 | 0x0100 // the opcode and RD bits
	bits := (uint16(q[2])<<8|uint16(q[3]))&opcodeRD | bitQR | uint16(rcode)
	b[2], b[3] = byte(bits>>8), byte(bits)
	return b
}

// rejectRcode is the RCODE of the reply reject builds for act.
func rejectRcode(act action) int {
	switch act {
	case actNotImp:
		return dns.RcodeNotImplemented
	case actBadVers:
		return dns.RcodeBadVers
	}
	return dns.RcodeFormatError
}

// question describes the question of req for logs.
func question(req *pipeline.Request) string {
	q := req.Question()
	return q.Name + " " + dns.Type(q.Qtype).String()
}
