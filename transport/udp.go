package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"
)

var (
	_ Exchanger     = (*UDP)(nil)
	_ wireExchanger = (*UDP)(nil)
)

// UDP exchanges queries with one upstream address over UDP (RFC 1035
// §4.2.1), over a small pool of connected sockets that queries share and
// that are replaced, on new random source ports, after a bounded number
// of queries and seconds (see udpPool). The kernel drops datagrams from
// any other address; together with the random message ID, unique among
// the queries in flight on a socket, and the question check, this is the
// defence against spoofed answers (RFC 5452).
//
// A UDP is safe for concurrent use.
type UDP struct {
	p      pinnedAddr
	tcp    Exchanger
	pool   *udpPool
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
	return &UDP{p: p, tcp: tcp, pool: newUDPPool(p)}
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
	r, _, err := u.exchange(ctx, q, nil, false)
	return r, err
}

// exchangeWire is Exchange with q packed as wire, when not nil (see
// wireExchanger). A reply that came over TCP has no wire.
func (u *UDP) exchangeWire(ctx context.Context, q *dns.Msg, wire []byte) (*dns.Msg, []byte, error) {
	return u.exchange(ctx, q, wire, true)
}

func (u *UDP) exchange(ctx context.Context, q *dns.Msg, wire []byte, keep bool) (*dns.Msg, []byte, error) {
	if u.closed.Load() {
		return nil, nil, u.p.fail(ClassCanceled, net.ErrClosed)
	}
	if ctx.Err() != nil {
		return nil, nil, u.p.failCtx(ctx, nil)
	}
	r, rw, err := u.pool.exchange(ctx, u.p, q, wire, keep)
	if err != nil || !r.Truncated || u.tcp == nil {
		return r, rw, err
	}
	tr, err := u.tcp.Exchange(ctx, q)
	if err != nil {
		if Classify(err) == ClassCanceled {
			return nil, nil, u.p.fail(ClassCanceled, fmt.Errorf("retry over tcp: %w", err))
		}
		return nil, nil, u.p.fail(ClassTruncated, fmt.Errorf("%w: retry over tcp: %w", ErrTruncated, err))
	}
	return tr, nil, nil
}

// Close makes later calls to Exchange fail with net.ErrClosed (as
// ClassCanceled), fails the UDP exchanges under way the same way, closes
// the sockets, and closes the TCP exchanger given to NewUDP, failing its
// exchanges under way. Close is idempotent.
func (u *UDP) Close() error {
	if u.closed.Swap(true) {
		return nil
	}
	u.pool.close()
	u.pool.wg.Wait()
	if u.tcp == nil {
		return nil
	}
	return u.tcp.Close()
}
