package profile

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// resolve returns Host's addresses, IPv6 and IPv4 as the resolver gave
// them, and says which resolver answered.
func (a *Android) resolve(ctx context.Context) ([]netip.Addr, string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout())
	defer cancel()
	if a.Resolver == "" {
		ips, err := (&net.Resolver{}).LookupNetIP(ctx, "ip", a.Host)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", a.Host, err)
		}
		for i := range ips {
			ips[i] = ips[i].Unmap()
		}
		return ips, "system resolver", nil
	}
	server, err := resolverAddr(a.Resolver)
	if err != nil {
		return nil, "", err
	}
	var ips []netip.Addr
	for _, t := range []uint16{dns.TypeAAAA, dns.TypeA} {
		got, err := lookup(ctx, server, dns.Fqdn(a.Host), t)
		if err != nil {
			return nil, "", fmt.Errorf("%s %s at %s: %w", a.Host, dns.TypeToString[t], server, err)
		}
		ips = append(ips, got...)
	}
	if len(ips) == 0 {
		return nil, "", fmt.Errorf("%s has no A or AAAA record at %s", a.Host, server)
	}
	return ips, "resolver " + server, nil
}

// resolverAddr takes ip or ip:port (port 53 by default).
func resolverAddr(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return "", fmt.Errorf("resolver %q: give ip or ip:port", s)
	}
	return netip.AddrPortFrom(ip, 53).String(), nil
}

// lookup asks server for name's records of type t over UDP, and over TCP
// when the answer was truncated. NXDOMAIN and NODATA give no address.
func lookup(ctx context.Context, server, name string, t uint16) ([]netip.Addr, error) {
	q := new(dns.Msg).SetQuestion(name, t)
	q.SetEdns0(1232, false)
	r, _, err := (&dns.Client{Net: "udp"}).ExchangeContext(ctx, q, server)
	if err == nil && r.Truncated {
		r, _, err = (&dns.Client{Net: "tcp"}).ExchangeContext(ctx, q, server)
	}
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("answered %s", rcodeName(r.Rcode))
	}
	var ips []netip.Addr
	for _, rr := range r.Answer {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		default:
			continue
		}
		if addr, ok := netip.AddrFromSlice(ip); ok && rr.Header().Rrtype == t {
			ips = append(ips, addr.Unmap())
		}
	}
	return ips, nil
}
