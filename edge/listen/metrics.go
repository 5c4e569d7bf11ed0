package listen

import (
	"errors"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// Metrics counts what the listeners see. Every label value is bound when
// the Metrics is built, so recording on the query path is a plain counter
// increment. One Metrics is shared by all listeners of a server and kept
// across reloads. A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	kinds  [numKinds]*kindMetrics
	panics prometheus.Counter
}

// numKinds bounds the listener kinds that get their own series: every
// pipeline.Kind up to and including KindDoQ.
const numKinds = int(pipeline.KindDoQ) + 1

// reason is why a message was dropped without an answer.
type reason uint8

const (
	reasonShort       reason = iota // shorter than a DNS header
	reasonResponse                  // QR set: a response, never answered
	reasonOverload                  // MaxConcurrent queries already being served
	reasonHandler                   // the pipeline returned pipeline.ErrDrop
	reasonConnLimit                 // a connection refused because MaxConns are open
	reasonClientLimit               // a connection refused because its client has MaxConnsPerClient open
	reasonTLS                       // a TLS handshake failed or timed out
	reasonProtocol                  // the client broke the transport's protocol (DoH, DoQ framing)
	reasonEvicted                   // an idle connection closed to make room for another client
	numReasons
	reasonNone = numReasons // not a drop: admitted
)

var reasonNames = [numReasons]string{"short", "response", "overload", "handler", "conn_limit", "client_limit", "tls", "protocol", "evicted"}

func (r reason) String() string { return reasonNames[r] }

// guardAction is what a listener did to a query its ACL or the rate
// limiter turned away.
type guardAction uint8

const (
	guardACL         guardAction = iota // REFUSED: the client is outside the ACL
	guardRateTC                         // TC=1: over the rate, on UDP
	guardRateRefused                    // REFUSED: over the rate or the queries in flight
	numGuardActions
)

var guardNames = [numGuardActions]string{"acl_refused", "rate_tc", "rate_refused"}

// countedRcodes get their own label value; any other RCODE is counted as
// "other" so the series stay bounded.
var countedRcodes = []int{
	dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure,
	dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused,
	dns.RcodeBadVers,
}

// rcodeSlots is one past the largest counted RCODE; slot rcodeSlots holds
// "other".
const rcodeSlots = dns.RcodeBadVers + 1

// kindMetrics is the set of series of one listener kind. Its methods are
// no-ops on a nil receiver.
type kindMetrics struct {
	queries   prometheus.Counter
	responses [rcodeSlots + 1]prometheus.Counter
	dropped   [numReasons]prometheus.Counter
	truncated prometheus.Counter
	panics    prometheus.Counter
	conns     prometheus.Gauge
	guards    [numGuardActions]prometheus.Counter
	// latency has one observer per answer source and one for errors
	// (see served); nil ones record nothing.
	latency [numSources + 1]*latencyHist
}

// NewMetrics builds the listener metrics and registers them with reg
// (nothing is registered when reg is nil). Registering again with a
// registry that already holds them reuses the registered collectors, so a
// server may build its Metrics more than once against one registry. It
// panics when reg holds other collectors under the same names.
func NewMetrics(reg prometheus.Registerer) *Metrics { return newMetrics(reg, true) }

// newMetrics is NewMetrics, without the latency histograms when
// histograms is false (to measure what they cost).
func newMetrics(reg prometheus.Registerer, histograms bool) *Metrics {
	const ns, sub = "dnsedge", "listener"
	queries := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "queries_total",
		Help: "Queries read, by listener kind, including those later dropped or rejected.",
	}, []string{"listener"}))
	responses := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "responses_total",
		Help: "Replies sent, by listener kind and RCODE.",
	}, []string{"listener", "rcode"}))
	dropped := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "dropped_total",
		Help: "Messages or connections dropped without a reply, by listener kind and reason.",
	}, []string{"listener", "reason"}))
	truncated := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "truncated_total",
		Help: "Replies truncated to the client's size (TC set), by listener kind.",
	}, []string{"listener"}))
	panics := register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "panics_total",
		Help: "Panics recovered while serving a query.",
	}))
	conns := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "connections",
		Help: "Open client connections (TCP, TLS or QUIC), by listener kind.",
	}, []string{"listener"}))

	guarded := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "guarded_total",
		Help: "Queries turned away before the pipeline, by listener kind and action: acl_refused (client outside the listener's acl), rate_tc and rate_refused (client over its rate limit or queries in flight).",
	}, []string{"listener", "action"}))

	var latency *latencyCollector
	if histograms {
		latency = register(reg, newLatencyCollector())
	}

	m := &Metrics{panics: panics}
	for k := pipeline.KindUDP; int(k) < numKinds; k++ {
		name := k.String()
		km := &kindMetrics{
			queries:   queries.WithLabelValues(name),
			truncated: truncated.WithLabelValues(name),
			panics:    panics,
			conns:     conns.WithLabelValues(name),
		}
		other := responses.WithLabelValues(name, "other")
		for i := range km.responses {
			km.responses[i] = other
		}
		for _, rc := range countedRcodes {
			km.responses[rc] = responses.WithLabelValues(name, dns.RcodeToString[rc])
		}
		for r := range numReasons {
			km.dropped[r] = dropped.WithLabelValues(name, r.String())
		}
		for a := range numGuardActions {
			km.guards[a] = guarded.WithLabelValues(name, guardNames[a])
		}
		if latency != nil {
			km.bindLatency(latency, k)
		}
		m.kinds[k] = km
	}
	return m
}

// register registers c with reg, or returns the collector reg already holds
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return c
}

// kind returns the series of listener kind k, nil when m is nil.
func (m *Metrics) kind(k pipeline.Kind) *kindMetrics {
	if m == nil || int(k) >= numKinds {
		return nil
	}
	return m.kinds[k]
}

func (k *kindMetrics) query() {
	if k != nil {
		k.queries.Inc()
	}
}

func (k *kindMetrics) response(rcode int, truncated bool) {
	if k == nil {
		return
	}
	if rcode < 0 || rcode >= rcodeSlots {
		rcode = rcodeSlots
	}
	k.responses[rcode].Inc()
	if truncated {
		k.truncated.Inc()
	}
}

func (k *kindMetrics) drop(r reason) {
	if k != nil {
		k.dropped[r].Inc()
	}
}

func (k *kindMetrics) panicked() {
	if k != nil {
		k.panics.Inc()
	}
}

func (k *kindMetrics) connOpened() {
	if k != nil {
		k.conns.Inc()
	}
}

func (k *kindMetrics) connClosed() {
	if k != nil {
		k.conns.Dec()
	}
}

func (k *kindMetrics) guarded(a guardAction) {
	if k != nil {
		k.guards[a].Inc()
	}
}
