package transport

import (
	"context"
	"crypto/tls"
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
	// see whether an answer over EDNSBufferSize (1232) bytes crosses the
	// path; default ". DNSKEY". The test needs a question whose answer is
	// that large: an authoritative-only server refuses ". DNSKEY", and a
	// resolver's answer to it may be smaller. When the answer is an error
	// or too small, the report says the test did not run
	// (PathReport.LargeUntested) instead of judging the path.
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
	// TLS and HTTP3 configure encrypted endpoints as in UpstreamConfig.
	TLS   TLSOptions
	HTTP3 bool
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
	// LargeSize is the size of the large answer when one over
	// EDNSBufferSize bytes arrived whole; 0 otherwise. It is measured as
	// packed with name compression, as servers send answers, so a smaller
	// answer is not counted as large.
	LargeSize int
	// LargeTC: over UDP the large answer came back truncated.
	LargeTC bool
	// LargeUntested says why the large-answer probe could not test the
	// path: its answer was an error (REFUSED, NOTAUTH, SERVFAIL...) or no
	// larger than EDNSBufferSize bytes. Empty when the probe got a large
	// answer, a truncated one, or none.
	LargeUntested string
	Err           string // the last error seen
	Problem       string // why the path is broken; empty when it is fine
	Warning       string // something worth a look that does not break the path
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
// probes each of its addresses, each family on its own socket: over UDP
// and TCP for a plain endpoint, over its own protocol (DoT, DoH, DoQ,
// verifying the certificate as the upstream would) for an encrypted one.
// Resolution failures are reported as a path with no address.
func Diagnose(ctx context.Context, targets []Target, resolver Resolver, cfg ProbeConfig) []PathReport {
	cfg = cfg.withDefaults()
	type job struct {
		t     Target
		proto string
		addr  netip.AddrPort
		tls   *tls.Config
	}
	var jobs []job
	var out []PathReport
	for _, t := range targets {
		addrs, err := targetAddrs(ctx, t, resolver)
		if err != nil {
			out = append(out, PathReport{Upstream: t.Name, Err: err.Error(), Problem: "cannot resolve upstream host name"})
		}
		protos := []string{"udp", "tcp"}
		var conf *tls.Config
		if t.Endpoint.Encrypted() {
			protos = []string{t.Endpoint.Scheme}
			if conf, err = ClientTLSConfig(t.TLS, t.Endpoint); err != nil {
				out = append(out, PathReport{Upstream: t.Name, Proto: t.Endpoint.Scheme, Err: err.Error(), Problem: "bad TLS settings"})
				continue
			}
		}
		for _, a := range addrs {
			for _, proto := range protos {
				jobs = append(jobs, job{t, proto, netip.AddrPortFrom(a, t.Endpoint.Port), conf})
			}
		}
	}
	reports := make([]PathReport, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			reports[i] = probePath(ctx, j.t, j.proto, j.addr, j.tls, cfg)
		})
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

func probePath(ctx context.Context, t Target, proto string, addr netip.AddrPort, tlsConf *tls.Config, cfg ProbeConfig) PathReport {
	fam := FamilyOf(addr.Addr())
	r := PathReport{Upstream: t.Name, Proto: proto, Family: fam, Addr: addr}
	// Plain paths are probed with a bare client, so that a truncated UDP
	// answer shows as such instead of being retried over TCP.
	var exchange func(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
	if proto == "udp" || proto == "tcp" {
		c := &dns.Client{Net: fam.Network(proto), Timeout: cfg.Timeout, UDPSize: 4096}
		exchange = func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
			m, _, err := c.ExchangeContext(ctx, q, addr.String())
			return m, err
		}
	} else {
		ex, err := newExchanger(proto, addr, UpstreamConfig{Name: t.Name, Endpoint: t.Endpoint, HTTP3: t.HTTP3}, tlsConf, UpstreamDeps{})
		if err != nil {
			r.Err, r.Problem = err.Error(), "cannot set up the path"
			return r
		}
		defer ex.Close()
		exchange = func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			return ex.Exchange(ctx, q)
		}
	}
	var total time.Duration
	for range cfg.Probes {
		if ctx.Err() != nil {
			break
		}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(cfg.Name), cfg.Type)
		q.SetEdns0(EDNSBufferSize, false)
		r.Sent++
		start := time.Now()
		m, err := exchange(ctx, q)
		rtt := time.Since(start)
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
	probeLarge(ctx, exchange, cfg, &r)
	var warnings []string
	if r.Received < r.Sent {
		warnings = append(warnings, fmt.Sprintf("%d of %d probes lost", r.Sent-r.Received, r.Sent))
	}
	if r.LargeUntested != "" {
		warnings = append(warnings, fmt.Sprintf("large-answer test not run: %s; use -large NAME/TYPE with an answer over %d bytes", r.LargeUntested, EDNSBufferSize))
	}
	r.Warning = strings.Join(warnings, "; ")
	untested := r.LargeUntested != ""
	switch {
	case r.Received == 0:
		r.Problem = "unreachable: no probe answered"
	case 2*r.Received <= r.Sent:
		r.Problem = fmt.Sprintf("heavy loss: %d of %d probes lost", r.Sent-r.Received, r.Sent)
	case proto == "udp" && r.LargeSize == 0 && !r.LargeTC && !untested:
		r.Problem = "large UDP answer lost (path MTU black hole?)"
	case proto != "udp" && r.LargeSize == 0 && !untested:
		r.Problem = "large answer failed over " + proto
	}
	return r
}

// probeLarge asks cfg's large question with DO and a 4096-byte buffer and
// records on r what came back: a large answer (LargeSize), a truncated one
// (LargeTC), one that cannot test the path (LargeUntested), or an error
// (Err, unless an earlier one is there).
func probeLarge(ctx context.Context, exchange func(context.Context, *dns.Msg) (*dns.Msg, error), cfg ProbeConfig, r *PathReport) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(cfg.LargeName), cfg.LargeType)
	q.SetEdns0(4096, true)
	question := dns.Fqdn(cfg.LargeName) + " " + dns.Type(cfg.LargeType).String()
	m, err := exchange(ctx, q)
	switch {
	case err != nil:
		if r.Err == "" {
			r.Err = "large answer: " + err.Error()
		}
	case m.Rcode != dns.RcodeSuccess:
		// An authoritative-only server refuses names outside its zones:
		// the reply is small whatever the path carries.
		r.LargeUntested = question + " answered " + rcodeName(m.Rcode)
	case m.Truncated:
		r.LargeTC = true
	default:
		// Unpacked messages are measured uncompressed, which would count
		// a compressed 1100-byte answer as over 1232.
		m.Compress = true
		if n := m.Len(); n > EDNSBufferSize {
			r.LargeSize = n
		} else {
			r.LargeUntested = fmt.Sprintf("%s answer is only %d bytes", question, n)
		}
	}
}

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}
