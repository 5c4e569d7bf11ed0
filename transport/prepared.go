package transport

import (
	"context"

	"github.com/miekg/dns"
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
	wire, err := q.Pack()
	if err != nil {
		return nil
	}
	return wire
}
