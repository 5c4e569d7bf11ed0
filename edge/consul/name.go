package consul

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
)

// Kind is what a name under the Consul domain asks for.
type Kind uint8

// Kinds of names.
const (
	// KindService: [tag.]NAME.service[.DC].DOMAIN, or the RFC 2782 form
	// _NAME._tcp.service… (no tag) and _NAME._TAG.service….
	KindService Kind = iota + 1
	// KindNode: NODE.node[.DC].DOMAIN.
	KindNode
	// KindAddr: HEX.addr[.DC].DOMAIN, the target of SRV records of
	// instances with an address of their own: the address in hex, 8
	// digits for IPv4, 32 for IPv6, as Consul writes it.
	KindAddr
)

// Name is a parsed name under the Consul domain. Labels are lower case.
type Name struct {
	Kind Kind
	// Service and Tag for KindService (Tag empty for none); Node for
	// KindNode; Addr for KindAddr.
	Service, Tag, Node string
	Addr               netip.Addr
	// Datacenter is the datacenter label, empty when the name has none
	// (the configured datacenter).
	Datacenter string
	// RFC2782 is set for the _NAME._PROTO|_TAG form.
	RFC2782 bool
}

// Errors of ParseName.
var (
	ErrNotInDomain = errors.New("name is not under the consul domain")
	ErrBadName     = errors.New("name is not a consul service, node or addr name")
)

// ParseName parses name, a lower-case FQDN, under domain, a lower-case
// FQDN such as "consul.". It follows Consul's DNS interface: the label
// right before the domain is the kind ("service", "node" or "addr"), or
// the datacenter when the label before it is the kind. A service name
// has one label, or two: a tag then the name, or the RFC 2782 form
// "_NAME._PROTO" (where "_tcp" means no tag, any other label is a tag,
// "_NAME._TAG"). A node name is one label. Names at the domain itself
// and names that fit none of the forms return ErrBadName; names outside
// the domain ErrNotInDomain.
func ParseName(name, domain string) (Name, error) {
	var n Name
	if !strings.HasSuffix(name, domain) || (len(name) > len(domain) && name[len(name)-len(domain)-1] != '.') {
		return n, ErrNotInDomain
	}
	rest := strings.TrimSuffix(name[:len(name)-len(domain)], ".")
	if rest == "" {
		return n, ErrBadName
	}
	// At most four labels: tag, name, kind, datacenter. Split into an
	// array, not a slice, so that parsing allocates nothing.
	var arr [4]string
	n0 := 0
	for rest != "" {
		if n0 == len(arr) {
			return n, ErrBadName
		}
		var l string
		l, rest, _ = strings.Cut(rest, ".")
		if l == "" {
			return n, ErrBadName
		}
		arr[n0] = l
		n0++
	}
	labels := arr[:n0]
	k := len(labels) - 1
	kind := kindOf(labels[k])
	if kind == 0 && k >= 1 {
		if kind = kindOf(labels[k-1]); kind != 0 {
			n.Datacenter = labels[k]
			k--
		}
	}
	if kind == 0 {
		return n, ErrBadName
	}
	n.Kind = kind
	pre := labels[:k]
	switch kind {
	case KindService:
		switch len(pre) {
		case 1:
			if strings.HasPrefix(pre[0], "_") {
				return n, ErrBadName
			}
			n.Service = pre[0]
		case 2:
			if strings.HasPrefix(pre[0], "_") && strings.HasPrefix(pre[1], "_") {
				n.RFC2782 = true
				n.Service = pre[0][1:]
				if n.Tag = pre[1][1:]; n.Tag == "tcp" {
					n.Tag = ""
				}
			} else if !strings.HasPrefix(pre[0], "_") && !strings.HasPrefix(pre[1], "_") {
				n.Tag, n.Service = pre[0], pre[1]
			} else {
				return n, ErrBadName
			}
			if n.Service == "" || (n.RFC2782 && pre[1] == "_") {
				return n, ErrBadName
			}
		default:
			return n, ErrBadName
		}
	case KindNode:
		if len(pre) != 1 {
			return n, ErrBadName
		}
		n.Node = pre[0]
	case KindAddr:
		if len(pre) != 1 {
			return n, ErrBadName
		}
		a, ok := parseHexAddr(pre[0])
		if !ok {
			return n, ErrBadName
		}
		n.Addr = a
	}
	return n, nil
}

func kindOf(label string) Kind {
	switch label {
	case "service":
		return KindService
	case "node":
		return KindNode
	case "addr":
		return KindAddr
	}
	return 0
}

// parseHexAddr parses an address written in hex: 8 digits for IPv4, 32
// for IPv6.
func parseHexAddr(s string) (netip.Addr, bool) {
	if len(s) != 8 && len(s) != 32 {
		return netip.Addr{}, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

// hexAddr writes a as parseHexAddr reads it.
func hexAddr(a netip.Addr) string {
	a = a.Unmap()
	b := a.AsSlice()
	return hex.EncodeToString(b)
}
