package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxMsgSize is the largest DNS message: the limit of a UDP datagram and of
// the two-byte length prefix on stream transports (RFC 1035 §4.2.2).
const maxMsgSize = 65535

// msgBufPool holds *[]byte of maxMsgSize bytes for packing queries and
// reading replies, so the hot path does not allocate one per query.
var msgBufPool = sync.Pool{New: func() any {
	b := make([]byte, maxMsgSize)
	return &b
}}

func getMsgBuf() *[]byte  { return msgBufPool.Get().(*[]byte) }
func putMsgBuf(b *[]byte) { msgBufPool.Put(b) }

// aLongTimeAgo is a deadline in the past: setting it unblocks pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// pinnedAddr is one upstream address and the network name that pins it to
// its family ("udp4", "tcp6", ...). IPv4-mapped IPv6 addresses are unmapped
// first, so an IPv4 path never sends on an IPv6 socket.
type pinnedAddr struct {
	addr    netip.AddrPort
	network string
	// signer signs queries and verifies replies (TSIG); nil for none.
	signer Signer
}

func pin(addr netip.AddrPort, proto string) pinnedAddr {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return pinnedAddr{addr: addr, network: FamilyOf(addr.Addr()).Network(proto)}
}

// fail wraps err as a failure of class c of a query to p.
func (p pinnedAddr) fail(c Class, err error) error {
	return &ExchangeError{Class: c, Err: fmt.Errorf("query %s over %s: %w", p.addr, p.network, err)}
}

// failCtx reports the end of ctx (or an I/O deadline set from it) as
// ClassCanceled when the caller gave up and ClassTimeout otherwise.
func (p pinnedAddr) failCtx(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return p.fail(ClassCanceled, context.Canceled)
	}
	if err == nil {
		err = context.DeadlineExceeded
	}
	return p.fail(ClassTimeout, err)
}

// failIO classes an I/O error: a deadline is the ctx's doing, anything
// else (refused, unreachable, reset, EOF) is the network's.
func (p pinnedAddr) failIO(ctx context.Context, err error) error {
	if isTimeout(err) || ctx.Err() != nil {
		return p.failCtx(ctx, err)
	}
	return p.fail(ClassNetwork, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// dialStream connects a stream socket to p, pinned to p's family. The dial
// is bounded by ctx.
func (p pinnedAddr) dialStream(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, p.network, p.addr.String())
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	connected(ctx, nc)
	return nc, nil
}

// upstreamQuery returns the message to send for q: a copy with ID id (a
// fresh random one, or 0 on DoH and DoQ, RFC 8484 §4.1, RFC 9250 §4.2.1)
// that advertises an EDNS buffer of EDNSBufferSize. An OPT record
// in q is copied with only its UDP size changed (DO, version and options are
// kept); without one, an OPT with DO off is added. Any other OPT in q is
// dropped (RFC 6891 §6.1.1 allows one). A trailing TSIG or SIG(0) record
// stays last. q and the records it holds are not modified; the copy shares
// q's question and records, which must be treated as read-only.
//
// A query that ends with a TSIG record goes as it is, with the new ID
// only: it is a client's, signed with a key dnsedge does not hold, and
// passed on unchanged (RFC 8945 §5.5); the MAC covers the original ID
// that the TSIG record holds, not the header's.
// dialTurn waits for the one dial token of an exchanger (gate, capacity
// 1), so that concurrent callers that find no connection wait for a
// single dial instead of each dialing their own. It returns the function
// that gives the token back, or the failure of waiting: ctx ending, or
// the exchanger closing (life done).
func (p pinnedAddr) dialTurn(ctx, life context.Context, gate chan struct{}) (func(), error) {
	select {
	case gate <- struct{}{}:
		return func() { <-gate }, nil
	case <-ctx.Done():
		return nil, p.failCtx(ctx, fmt.Errorf("wait for dial: %w", ctx.Err()))
	case <-life.Done():
		return nil, p.fail(ClassCanceled, net.ErrClosed)
	}
}

// QueryPaddingBlock is the block size queries on encrypted transports are
// padded to: RFC 8467 §4.1 recommends 128 octets for queries.
const QueryPaddingBlock = 128

// padQuery adds an EDNS(0) Padding option (RFC 7830) to m, a message made
// by upstreamQuery (so it has an OPT of its own), that brings its wire
// length to a multiple of QueryPaddingBlock, so an observer of the
// encrypted stream learns less from the size of the query. The OPT's
// option slice may be shared with the client's query, so it is not
// appended to in place.
func padQuery(m *dns.Msg) {
	opt := m.IsEdns0()
	if opt == nil {
		return
	}
	pad := &dns.EDNS0_PADDING{}
	opts := make([]dns.EDNS0, 0, len(opt.Option)+1)
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0PADDING {
			opts = append(opts, o)
		}
	}
	opt.Option = append(opts, pad)
	if n := m.Len() % QueryPaddingBlock; n != 0 {
		pad.Padding = make([]byte, QueryPaddingBlock-n)
	}
}

func upstreamQuery(q *dns.Msg, id uint16) *dns.Msg {
	if n := len(q.Extra); n > 0 && q.Extra[n-1].Header().Rrtype == dns.TypeTSIG {
		m := *q
		m.Id = id
		return &m
	}
	m := &dns.Msg{
		MsgHdr:   q.MsgHdr,
		Compress: q.Compress,
		Question: q.Question,
		Answer:   q.Answer,
		Ns:       q.Ns,
	}
	m.Id = id
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	if old := q.IsEdns0(); old != nil {
		opt.Hdr.Ttl = old.Hdr.Ttl
		opt.Option = old.Option
	}
	opt.SetUDPSize(EDNSBufferSize)
	m.Extra = make([]dns.RR, 0, len(q.Extra)+1)
	var last dns.RR
	for i, rr := range q.Extra {
		switch rr.(type) {
		case *dns.OPT:
			continue
		case *dns.TSIG, *dns.SIG:
			if i == len(q.Extra)-1 {
				last = rr
				continue
			}
		}
		m.Extra = append(m.Extra, rr)
	}
	m.Extra = append(m.Extra, opt)
	if last != nil {
		m.Extra = append(m.Extra, last)
	}
	return m
}

// Reasons matchReply rejects a packet before unpacking it. They are
// allocated once: an attacker spraying junk at a query socket should not
// cost an allocation per packet.
var (
	errReplyShort  = fmt.Errorf("%w: shorter than a header", ErrMalformed)
	errReplyID     = fmt.Errorf("%w: id mismatch", ErrMalformed)
	errReplyNotQR  = fmt.Errorf("%w: not a response", ErrMalformed)
	errReplyQMatch = fmt.Errorf("%w: question mismatch", ErrMalformed)
)

// matchReply unpacks pkt and checks that it answers q, sent with message ID
// id: it must be a response (QR=1) with that ID and q's question (names
// compared case-insensitively, RFC 4343; type and class exactly). A reply
// with an empty question section is accepted only when it is a bare error
// (an rcode other than NOERROR and no answers), as some servers send for
// REFUSED or FORMERR. A truncated (TC=1) reply whose question matches is
// accepted even if its records do not all unpack: it will be retried over
// TCP. The reply is returned with its ID set to q.Id. Every error wraps
// ErrMalformed. matchReply does not keep pkt.
func matchReply(pkt []byte, id uint16, q *dns.Msg) (*dns.Msg, error) {
	if len(pkt) < 12 {
		return nil, errReplyShort
	}
	if binary.BigEndian.Uint16(pkt) != id {
		return nil, errReplyID
	}
	if pkt[2]&0x80 == 0 {
		return nil, errReplyNotQR
	}
	r := new(dns.Msg)
	err := r.Unpack(pkt)
	if !sameQuestion(r, q) {
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, errReplyQMatch
	}
	if err != nil && !(r.Truncated && len(r.Question) > 0) {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	r.Id = q.Id
	return r, nil
}

func sameQuestion(r, q *dns.Msg) bool {
	if len(r.Question) == 0 && len(q.Question) > 0 {
		return r.Rcode != dns.RcodeSuccess && len(r.Answer) == 0
	}
	if len(r.Question) != len(q.Question) {
		return false
	}
	for i, rq := range r.Question {
		qq := q.Question[i]
		if rq.Qtype != qq.Qtype || rq.Qclass != qq.Qclass || !equalFoldASCII(rq.Name, qq.Name) {
			return false
		}
	}
	return true
}

// equalFoldASCII compares DNS names ignoring ASCII case only (RFC 4343 §3);
// strings.EqualFold would also fold non-ASCII letters, which DNS does not.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
