package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/gaissmai/bart"
)

// Table finds the value a client belongs to: by its exact client id, else
// by the most specific network containing its address. Rule compilation
// uses it for the source, ECS and client id dimensions and for whitelist
// splits; edge/zone uses it to pick a tenant.
//
// Fill a Table with AddID and AddNetwork before the first lookup; after
// that it is read-only and safe for concurrent use. Lookups do not
// allocate. The zero Table is empty and ready to fill.
type Table[V any] struct {
	ids  map[string]V
	nets bart.Table[V]
}

// AddID makes id belong to v, replacing what it belonged to.
func (t *Table[V]) AddID(id string, v V) {
	if t.ids == nil {
		t.ids = make(map[string]V)
	}
	t.ids[id] = v
}

// AddNetwork makes the addresses of p belong to v, replacing what p
// belonged to. p is masked first; an IPv4-mapped prefix is taken as the
// IPv4 one (see ParseNetwork).
func (t *Table[V]) AddNetwork(p netip.Prefix, v V) {
	t.nets.Insert(normalize(p), v)
}

// LookupID returns the value of client id id.
func (t *Table[V]) LookupID(id string) (V, bool) {
	v, ok := t.ids[id]
	return v, ok
}

// LookupAddr returns the value of the most specific network containing
// a. IPv4-mapped addresses are unmapped and IPv6 zones ignored; the zero
// Addr belongs to no network.
func (t *Table[V]) LookupAddr(a netip.Addr) (V, bool) {
	if !a.IsValid() {
		var zero V
		return zero, false
	}
	return t.nets.Lookup(a.Unmap().WithZone(""))
}

// LookupPrefix returns the value of the most specific network containing
// all of p (an ECS subnet, say): a network of at most p's length that
// contains p's address. The zero Prefix belongs to no network.
func (t *Table[V]) LookupPrefix(p netip.Prefix) (V, bool) {
	if !p.IsValid() {
		var zero V
		return zero, false
	}
	return t.nets.LookupPrefix(normalize(p))
}

// Lookup returns the value of client id id when it has one, else that of
// the most specific network containing a.
func (t *Table[V]) Lookup(id string, a netip.Addr) (V, bool) {
	if id != "" {
		if v, ok := t.ids[id]; ok {
			return v, true
		}
	}
	return t.LookupAddr(a)
}

// normalize masks p and turns an IPv4-mapped prefix into the IPv4 one.
func normalize(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// ParseNetwork parses a CIDR or a bare address (which stands for itself
// alone), masked, with IPv4-mapped IPv6 prefixes turned into IPv4 ones so
// they match unmapped clients. A zone (fe80::1%eth0) is refused.
func ParseNetwork(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			// netip names itself: keep only what is wrong.
			msg := err.Error()
			if _, why, ok := strings.Cut(msg, "): "); ok {
				msg = why
			}
			return netip.Prefix{}, fmt.Errorf("%q is not a network: %s", s, msg)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("network %q must not have a zone", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() < 96 {
		return netip.Prefix{}, fmt.Errorf("network %q: an IPv4-mapped prefix needs at least 96 bits", s)
	}
	return normalize(p), nil
}
