package l2

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
)

// collectors returns the store's metrics, all named dnsedge_l2_*.
func (s *Store) collectors() []prometheus.Collector {
	opts := func(name, help string, labels prometheus.Labels) prometheus.Opts {
		return prometheus.Opts{Namespace: "dnsedge", Subsystem: "l2", Name: name, Help: help, ConstLabels: labels}
	}
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts(opts(name, help, labels)), func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help, nil)), f)
	}
	const (
		rejected = "Values read from Redis and rejected, by reason: a MAC that does not verify, another question, a malformed value."
		drops    = "Answers not written to Redis, by reason: the write queue was full, or the breaker was open."
	)
	return []prometheus.Collector{
		counter("lookups_total", "Lookups sent to Redis.", nil, &s.lookups),
		counter("lookup_errors_total", "Lookups that failed or timed out.", nil, &s.lookupErrors),
		counter("lookups_slow_total", "Lookups answered after the budget they started with.", nil, &s.slow),
		counter("skipped_total", "Misses that did not ask Redis because the breaker was open.", nil, &s.skipped),
		counter("rejected_total", rejected, prometheus.Labels{"reason": "mac"}, &s.rejectMAC),
		counter("rejected_total", rejected, prometheus.Labels{"reason": "question"}, &s.rejectQuestion),
		counter("rejected_total", rejected, prometheus.Labels{"reason": "format"}, &s.rejectOther),
		counter("writes_total", "Answers written to Redis.", nil, &s.written),
		counter("write_errors_total", "Answers whose write to Redis failed.", nil, &s.writeErrors),
		counter("write_drops_total", drops, prometheus.Labels{"reason": "queue_full"}, &s.dropFull),
		counter("write_drops_total", drops, prometheus.Labels{"reason": "breaker_open"}, &s.dropOpen),
		counter("breaker_opens_total", "Times the breaker opened (after failures, or a failed probe).", nil, &s.br.opens),
		gauge("breaker_state", "The breaker: 0 closed (Redis asked), 1 open (skipped), 2 half-open (probing).",
			func() float64 { return float64(s.br.state.Load()) }),
		gauge("budget_seconds", "How long a miss waits for Redis before asking the upstream too.",
			func() float64 { return s.budget.current().Seconds() }),
		gauge("lookup_p99_seconds", "The p99 latency of the recent lookups the budget is derived from; 0 until measured.",
			func() float64 { return float64(s.budget.p99.Load()) / 1e9 }),
		gauge("write_queue", "Answers waiting to be written to Redis.", func() float64 { return float64(len(s.writes)) }),
	}
}

// Register registers the store's metrics with reg, replacing those of
// the store of a previous configuration generation.
func (s *Store) Register(reg prometheus.Registerer) error {
	if err := promreg.Replace(reg, s.collectors()...); err != nil {
		return fmt.Errorf("l2: register metrics: %w", err)
	}
	return nil
}
