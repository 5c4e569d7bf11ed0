package transport

import (
	"fmt"

	"github.com/miekg/dns"
)

// A Signer signs the queries sent to an upstream and verifies its
// replies with a shared key (TSIG, RFC 8945). Implementations are safe
// for concurrent use.
type Signer interface {
	// SignQuery returns the wire form of q with a TSIG record appended
	// (a TSIG q carries is replaced), and the MAC the reply must be
	// chained to.
	SignQuery(q *dns.Msg) (wire []byte, mac string, err error)
	// VerifyReply checks that reply, whose wire form is wire, is signed
	// with the key over mac and in time (RFC 8945 §5.4). A reply
	// without a TSIG record does not verify.
	VerifyReply(wire []byte, reply *dns.Msg, mac string) error
}

// ErrBadSignature: the reply of an upstream that signs is unsigned or
// its TSIG does not verify. It is a malformed reply (it wraps
// ErrMalformed) and counts against the path like one.
var ErrBadSignature = fmt.Errorf("%w: TSIG does not verify", ErrMalformed)

// SetSigner makes ex, an exchanger of this package, sign every query and
// verify every reply with s, and reports whether it could. It must be
// called before ex is used.
func SetSigner(ex Exchanger, s Signer) bool {
	switch e := ex.(type) {
	case *UDP:
		e.p.signer = s
		if e.tcp != nil {
			SetSigner(e.tcp, s)
		}
	case *TCP:
		e.p.signer = s
	case *DoH:
		e.p.signer = s
	case *DoQ:
		e.p.signer = s
	default:
		return false
	}
	return true
}

// packQuery packs m into buf, or, when p signs, returns m signed (in a
// new buffer) and its MAC.
func (p pinnedAddr) packQuery(m *dns.Msg, buf []byte) (wire []byte, mac string, err error) {
	if p.signer == nil {
		wire, err = PackQuery(m, buf)
		return wire, "", err
	}
	return p.signer.SignQuery(m)
}

// checkReply verifies the signature of r, unpacked from pkt, when p
// signs; mac is the query's.
func (p pinnedAddr) checkReply(pkt []byte, r *dns.Msg, mac string) error {
	if p.signer == nil {
		return nil
	}
	if err := p.signer.VerifyReply(pkt, r, mac); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}
