package middleware

import (
	"context"
	"fmt"

	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/transport"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// probe asks next, in the background, whether the suffix k.name exists,
// unless its state is known or a probe of it is in flight. The probe is an
// internal SOA query on k.route, bounded by nxProbeTimeout and independent
// of the client's query.
func (n *NXDomain) probe(next pipeline.Handler, k nxKey) {
	now := n.now()
	n.mu.Lock()
	st := n.states[k]
	if st == nil {
		st = &suffixState{}
		n.states[k] = st // bounded: one per (route, suffix)
	}
	if n.closed || st.running || now.Before(st.known) {
		n.mu.Unlock()
		return
	}
	st.running = true
	n.wg.Add(1)
	n.mu.Unlock()
	n.probes.Add(1)
	go func() {
		defer n.wg.Done()
		res, err := n.ask(next, k)
		n.settle(k, res, err)
	}()
}

// ask sends the probe of k.name. A panic in next is turned into an error:
// no listener's recover covers this goroutine.
func (n *NXDomain) ask(next pipeline.Handler, k nxKey) (res *dns.Msg, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("probe %s SOA: panic: %v", k.name, r)
		}
	}()
	ctx, cancel := context.WithTimeout(n.ctx, nxProbeTimeout)
	defer cancel()
	q := new(dns.Msg).SetQuestion(k.name, dns.TypeSOA)
	q.SetEdns0(transport.EDNSBufferSize, false)
	return next.ServeDNS(ctx, &pipeline.Request{
		Msg:      q,
		Listener: pipeline.KindInternal,
		Route:    k.route,
		Received: n.now(),
		MaxSize:  dns.MaxMsgSize,
	})
}

// settle records what the probe of k learned. A suffix denied (NXDOMAIN
// without a CNAME chain) is remembered like any name, which denies every
// name under it; a suffix that exists is not probed again for the TTL; a
// probe that failed holds the next one back for nxProbeRetry.
func (n *NXDomain) settle(k nxKey, res *dns.Msg, err error) {
	known := min(n.ttl, nxProbeRetry)
	switch {
	case err != nil || res == nil:
	case res.Rcode == dns.RcodeNameError && len(res.Answer) == 0:
		soa := negativeSOA(res.Ns)
		if ttl := n.negativeTTL(soa); ttl > 0 {
			n.store(k, soa, ttl)
			known = ttl
		} else {
			known = n.ttl
		}
	case res.Rcode == dns.RcodeSuccess || res.Rcode == dns.RcodeNameError:
		n.forget(k.route, k.name)
		known = n.ttl
	}
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.states[k]
	st.running, st.known = false, now.Add(known)
}

// collectors returns the cache's metrics, read from its counters at scrape
// time.
func (n *NXDomain) collectors() []prometheus.Collector {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "dnsedge", Subsystem: "nxdomain_cache", Name: name, Help: help}
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("hits_total", "Queries denied locally by the NXDOMAIN cache.")),
			func() float64 { return float64(n.hits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("probes_total", "Internal SOA queries asking whether a configured suffix exists.")),
			func() float64 { return float64(n.probes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("entries", "Names remembered as not existing, expired ones not yet removed included.")),
			func() float64 { return float64(n.count.Load()) }),
	}
}
