package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"
)

var _ Exchanger = (*UDP)(nil)

// UDP exchanges queries with one upstream address over UDP (RFC 1035
// §4.2.1). Each query gets its own connected socket, so the kernel picks a
// random source port and drops datagrams from any other address; together
// with the random message ID and the question check this is the defence
// against spoofed answers (RFC 5452).
//
// A UDP is safe for concurrent use. It keeps no sockets between queries.
type UDP struct {
	p      pinnedAddr
	tcp    Exchanger
	closed atomic.Bool
}

// NewUDP returns a UDP exchanger for addr, pinned to addr's family ("udp4"
// or "udp6"; an IPv4-mapped address counts as IPv4). On a truncated answer
// (TC=1) it retries the query over tcp, which should reach the same address
// over the same family. tcp may be nil: a truncated answer is then returned
// as it is, which is what upstream paths do, since the race retries it over
// the path's own TCP side. The UDP owns tcp: Close closes it.
func NewUDP(addr netip.AddrPort, tcp Exchanger) *UDP {
	p := pin(addr, "udp")
	return &UDP{p: p, tcp: tcp}
}

// Exchange sends q and returns the matching reply, with q's ID. q is not
// modified. The ctx deadline bounds the whole exchange, TCP retry included;
// a ctx without deadline or cancellation lets it wait forever.
//
// Packets that do not parse, carry another ID or question, or are not
// responses are ignored and reading goes on until a real answer or the
// deadline: the error is then ClassMalformed if only such packets came and
// ClassTimeout if nothing did. ICMP errors (port or host unreachable) give
// ClassNetwork. A truncated answer whose TCP retry fails gives
// ClassTruncated, wrapping ErrTruncated and the TCP error; a retry that the
// caller canceled is ClassCanceled.
func (u *UDP) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if u.closed.Load() {
		return nil, u.p.fail(ClassCanceled, net.ErrClosed)
	}
	if ctx.Err() != nil {
		return nil, u.p.failCtx(ctx, nil)
	}
	r, err := u.exchange(ctx, q)
	if err != nil || !r.Truncated || u.tcp == nil {
		return r, err
	}
	tr, err := u.tcp.Exchange(ctx, q)
	if err != nil {
		if Classify(err) == ClassCanceled {
			return nil, u.p.fail(ClassCanceled, fmt.Errorf("retry over tcp: %w", err))
		}
		return nil, u.p.fail(ClassTruncated, fmt.Errorf("%w: retry over tcp: %w", ErrTruncated, err))
	}
	return tr, nil
}

func (u *UDP) exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	m := upstreamQuery(q)
	bp := getMsgBuf()
	defer putMsgBuf(bp)
	buf := *bp
	wire, mac, err := u.p.packQuery(m, buf)
	if err != nil {
		// The query never left: not the path's fault.
		return nil, u.p.fail(ClassCanceled, fmt.Errorf("pack query: %w", err))
	}

	conn, err := dialUDP(u.p.addr)
	if err != nil {
		return nil, u.p.fail(ClassNetwork, fmt.Errorf("dial: %w", err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()

	if _, err := conn.Write(wire); err != nil {
		return nil, u.p.failIO(ctx, fmt.Errorf("write query: %w", err))
	}
	var bad error // why the last ignored packet was ignored
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if bad != nil && !errors.Is(ctx.Err(), context.Canceled) && isTimeout(err) {
				return nil, u.p.fail(ClassMalformed, fmt.Errorf("read reply: only unusable packets before the deadline, last: %w", bad))
			}
			return nil, u.p.failIO(ctx, fmt.Errorf("read reply: %w", err))
		}
		r, err := matchReply(buf[:n], m.Id, q)
		if err != nil {
			bad = err
			continue
		}
		// A reply that matches the query but whose TSIG does not
		// verify fails the attempt at once, as on the stream
		// transports: it is the path's malformed reply, and the race
		// moves on instead of waiting out the deadline.
		if err := u.p.checkReply(buf[:n], r, mac); err != nil {
			return nil, u.p.fail(ClassMalformed, fmt.Errorf("read reply: %w", err))
		}
		return r, nil
	}
}

// Close makes later calls to Exchange fail with net.ErrClosed (as
// ClassCanceled) and closes the TCP exchanger given to NewUDP, failing its
// exchanges under way. UDP exchanges under way finish on their own, bounded
// by their ctx. Close is idempotent.
func (u *UDP) Close() error {
	if u.closed.Swap(true) || u.tcp == nil {
		return nil
	}
	return u.tcp.Close()
}
