package transport

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ProbeConfig tunes Diagnose.
type ProbeConfig struct {
	Probes  int           // probes per path and protocol; default 5
	Timeout time.Duration // per probe; default 2s
	// Name and Type are asked by the reachability probes; default ". NS".
	Name string
	Type uint16
	// LargeName and LargeType are asked with DO and a 4096-byte buffer to
	// see whether an answer over 1232 bytes crosses the path over UDP;
	// default ". DNSKEY".
	LargeName string
	LargeType uint16
}

func (c ProbeConfig) withDefaults() ProbeConfig {
	if c.Probes <= 0 {
		c.Probes = 5
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Name == "" {
		c.Name, c.Type = ".", dns.TypeNS
	}
	if c.LargeName == "" {
		c.LargeName, c.LargeType = ".", dns.TypeDNSKEY
	}
	return c
}

// Target is one upstream to diagnose.
type Target struct {
	Name     string
	Endpoint Endpoint
	Pin      Pin
}

// PathReport is what the probes found on one path.
type PathReport struct {
	Upstream string
	Proto    string
	Family   Family
	Addr     netip.AddrPort
	Sent     int
	Received int
	RTTMin   time.Duration
	RTTAvg   time.Duration
	RTTMax   time.Duration
	EDNS     bool // the replies carried an OPT record
	// LargeSize is the size of the large answer when it arrived; 0 if not.
	LargeSize int
	// LargeTC: over UDP the large answer came back truncated.
	LargeTC bool
	Err     string // the last error seen
	Problem string // why the path is broken; empty when it is fine
	Warning string // something worth a look that does not break the path
}

// Broken reports whether the path has a problem.
func (r PathReport) Broken() bool { return r.Problem != "" }

// Loss is the fraction of probes that got no answer.
func (r PathReport) Loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Sent-r.Received) / float64(r.Sent)
}

// Diagnose resolves every target (through resolver, for host names) and
// probes each of its addresses over UDP and TCP, each family on its own
// socket. Resolution failures are reported as a path with no address.
func Diagnose(ctx context.Context, targets []Target, resolver Resolver, cfg ProbeConfig) []PathReport {
	cfg = cfg.withDefaults()
	type job struct {
		t    Target
		addr netip.AddrPort
	}
	var jobs []job
	var out []PathReport
	for _, t := range targets {
		addrs, err := targetAddrs(ctx, t, resolver)
		if err != nil {
			out = append(out, PathReport{Upstream: t.Name, Err: err.Error(), Problem: "cannot resolve upstream host name"})
		}
		for _, a := range addrs {
			jobs = append(jobs, job{t, netip.AddrPortFrom(a, t.Endpoint.Port)})
		}
	}
	reports := make([]PathReport, 2*len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		for k, proto := range []string{"udp", "tcp"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reports[2*i+k] = probePath(ctx, j.t.Name, proto, j.addr, cfg)
			}()
		}
	}
	wg.Wait()
	return append(out, reports...)
}

func targetAddrs(ctx context.Context, t Target, resolver Resolver) ([]netip.Addr, error) {
	if t.Endpoint.Addr.IsValid() {
		return []netip.Addr{t.Endpoint.Addr}, nil
	}
	var addrs []netip.Addr
	var errs []string
	for _, f := range []Family{IPv6, IPv4} {
		if !t.Pin.Allows(f) {
			continue
		}
		as, _, err := resolver.LookupAddrs(ctx, t.Endpoint.Host, f)
		if err != nil {
			errs = append(errs, err.Error())
		}
		addrs = append(addrs, as...)
	}
	if len(addrs) == 0 {
		if len(errs) == 0 {
			errs = append(errs, "no addresses")
		}
		return nil, fmt.Errorf("resolve %s: %s", t.Endpoint.Host, strings.Join(errs, "; "))
	}
	return addrs, nil
}

func probePath(ctx context.Context, upstream, proto string, addr netip.AddrPort, cfg ProbeConfig) PathReport {
	fam := FamilyOf(addr.Addr())
	r := PathReport{Upstream: upstream, Proto: proto, Family: fam, Addr: addr}
	c := &dns.Client{Net: fam.Network(proto), Timeout: cfg.Timeout, UDPSize: 4096}
	var total time.Duration
	for range cfg.Probes {
		if ctx.Err() != nil {
			break
		}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(cfg.Name), cfg.Type)
		q.SetEdns0(EDNSBufferSize, false)
		r.Sent++
		m, rtt, err := c.ExchangeContext(ctx, q, addr.String())
		if err != nil {
			r.Err = err.Error()
			continue
		}
		r.Received++
		total += rtt
		if r.RTTMin == 0 || rtt < r.RTTMin {
			r.RTTMin = rtt
		}
		r.RTTMax = max(r.RTTMax, rtt)
		r.EDNS = r.EDNS || m.IsEdns0() != nil
	}
	if r.Received > 0 {
		r.RTTAvg = total / time.Duration(r.Received)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(cfg.LargeName), cfg.LargeType)
	q.SetEdns0(4096, true)
	if m, _, err := c.ExchangeContext(ctx, q, addr.String()); err == nil {
		r.LargeTC = m.Truncated
		if !m.Truncated {
			r.LargeSize = m.Len()
		}
	} else if r.Err == "" {
		r.Err = "large answer: " + err.Error()
	}
	if r.Received < r.Sent {
		r.Warning = fmt.Sprintf("%d of %d probes lost", r.Sent-r.Received, r.Sent)
	}
	if r.LargeSize > 0 && r.LargeSize <= EDNSBufferSize {
		r.Warning = strings.TrimPrefix(r.Warning+fmt.Sprintf("; large probe answer is only %d bytes, too small to test the MTU", r.LargeSize), "; ")
	}
	switch {
	case r.Received == 0:
		r.Problem = "unreachable: no probe answered"
	case 2*r.Received <= r.Sent:
		r.Problem = fmt.Sprintf("heavy loss: %d of %d probes lost", r.Sent-r.Received, r.Sent)
	case proto == "udp" && r.LargeSize == 0 && !r.LargeTC:
		r.Problem = "large UDP answer lost (path MTU black hole?)"
	case proto == "tcp" && r.LargeSize == 0:
		r.Problem = "large answer failed over TCP"
	}
	return r
}
