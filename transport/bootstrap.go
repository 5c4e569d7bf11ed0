package transport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Bootstrap resolves upstream host names through a fixed list of resolvers
// given by address, so finding an upstream never depends on the upstream
// itself. Servers are asked in order; each gets a fair share of the
// remaining time. It is safe for concurrent use.
type Bootstrap struct {
	servers []netip.AddrPort
	ex      []Exchanger
}

// NewBootstrap returns a resolver that asks servers over UDP, retrying
// truncated answers over TCP.
func NewBootstrap(servers []netip.AddrPort) *Bootstrap {
	b := &Bootstrap{servers: servers}
	for _, s := range servers {
		b.ex = append(b.ex, NewUDP(s, NewTCP(s, TCPConfig{IdleTimeout: time.Second})))
	}
	return b
}

// ErrNoBootstrap is returned when a host name must be resolved but no
// bootstrap resolver is configured.
var ErrNoBootstrap = errors.New("no bootstrap resolvers")

// LookupAddrs returns host's addresses of family f and the smallest TTL of
// the answer. A name with no address of that family gives no addresses and
// no error.
func (b *Bootstrap) LookupAddrs(ctx context.Context, host string, f Family) ([]netip.Addr, time.Duration, error) {
	if len(b.ex) == 0 {
		return nil, 0, ErrNoBootstrap
	}
	qtype := dns.TypeA
	if f == IPv6 {
		qtype = dns.TypeAAAA
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(host), qtype)
	var errs []error
	for i, ex := range b.ex {
		actx, cancel := shareOf(ctx, len(b.ex)-i)
		m, err := ex.Exchange(actx, q)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("bootstrap %s: %w", b.servers[i], err))
			continue
		}
		switch m.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			errs = append(errs, fmt.Errorf("bootstrap %s: answered %s", b.servers[i], dns.RcodeToString[m.Rcode]))
			continue
		}
		addrs, ttl := addrsOf(m, q.Question[0].Name, qtype)
		return addrs, ttl, nil
	}
	return nil, 0, fmt.Errorf("look up %s %s: %w", host, dns.TypeToString[qtype], errors.Join(errs...))
}

// shareOf gives one of n remaining tries its share of ctx's time.
func shareOf(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, 2*time.Second)
	}
	return context.WithTimeout(ctx, time.Until(dl)/time.Duration(n))
}

// addrsOf collects the addresses of name (following CNAMEs inside the
// answer) and the smallest TTL on the way.
func addrsOf(m *dns.Msg, name string, qtype uint16) ([]netip.Addr, time.Duration) {
	var addrs []netip.Addr
	minTTL := uint32(1<<31 - 1)
	target := name
	for range 8 { // CNAME chain bound
		followed := false
		for _, rr := range m.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, target) {
				continue
			}
			switch v := rr.(type) {
			case *dns.CNAME:
				if !followed {
					target, followed = v.Target, true
					minTTL = min(minTTL, h.Ttl)
				}
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok && qtype == dns.TypeA {
					addrs = append(addrs, a)
					minTTL = min(minTTL, h.Ttl)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok && qtype == dns.TypeAAAA && !a.Is4In6() {
					addrs = append(addrs, a)
					minTTL = min(minTTL, h.Ttl)
				}
			}
		}
		if !followed || len(addrs) > 0 {
			break
		}
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, time.Duration(minTTL) * time.Second
}

// Close closes the bootstrap resolver's exchangers.
func (b *Bootstrap) Close() error {
	var errs []error
	for _, ex := range b.ex {
		errs = append(errs, ex.Close())
	}
	return errors.Join(errs...)
}
