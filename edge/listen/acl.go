package listen

import (
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// PrivateRanges are the sources a plain (UDP or TCP) listener configured
// without an ACL answers: loopback, RFC 1918, the RFC 4193 unique local
// range and link-local addresses. A resolver reachable from the internet
// with no ACL would be an open resolver, an amplifier for anyone.
var PrivateRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// An ACL is the set of client addresses a listener serves; the others get
// REFUSED. A lookup is a walk of a multibit prefix tree (bart.Lite), a
// few instructions per byte of the address, whatever the number of
// prefixes. A nil *ACL allows every address. Safe for concurrent use;
// immutable.
type ACL struct {
	set bart.Lite
}

// NewACL returns the ACL that allows the addresses of prefixes. IPv4
// prefixes also match IPv4-mapped IPv6 clients, which listeners unmap.
func NewACL(prefixes []netip.Prefix) (*ACL, error) {
	a := new(ACL)
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("acl: prefix %v is not valid", p)
		}
		a.set.Insert(p.Masked())
	}
	return a, nil
}

// Allows reports whether a may be served.
func (a *ACL) Allows(addr netip.Addr) bool {
	return a == nil || a.set.Lookup(addr.Unmap().WithZone(""))
}

// listenerACL returns the ACL of a listener of kind encrypted or not
// configured with cfg: cfg.ACL when set; otherwise none (every client)
// for encrypted listeners, which cannot be used to amplify (a TLS or
// QUIC handshake comes first), and cfg.Private (PrivateRanges when nil)
// for plain ones.
func listenerACL(cfg Config, encrypted bool) (*ACL, error) {
	switch {
	case cfg.ACL != nil:
		return NewACL(cfg.ACL)
	case encrypted:
		return nil, nil
	case cfg.Private != nil:
		return NewACL(cfg.Private)
	}
	return NewACL(PrivateRanges)
}
