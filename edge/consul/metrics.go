package consul

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
)

var (
	descAge = prometheus.NewDesc("dnsedge_consul_view_age_seconds",
		"Age of the view a name is answered from: time since Consul last answered its watch.", []string{"kind", "name", "datacenter"}, nil)
	descWatches = prometheus.NewDesc("dnsedge_consul_watches",
		"Watches running (one per service or node asked for).", nil, nil)
	descRequests = prometheus.NewDesc("dnsedge_consul_watch_requests_total",
		"Requests the watches sent to Consul, by outcome.", []string{"outcome"}, nil)
	descSwaps = prometheus.NewDesc("dnsedge_consul_view_swaps_total",
		"Views replaced because their content changed.", nil, nil)
	descStale = prometheus.NewDesc("dnsedge_consul_stale_answers_total",
		"Answers given from a view older than stale_after (EDE 3).", nil, nil)
	descWatchEvents = prometheus.NewDesc("dnsedge_consul_watch_events_total",
		"Watches started and stopped (idle).", []string{"event"}, nil)
	descFirstTimeouts = prometheus.NewDesc("dnsedge_consul_first_view_timeouts_total",
		"Queries that got SERVFAIL because a new watch had no view within first_wait.", nil, nil)
)

// Register registers the backend's metrics with reg (nil: none),
// replacing those of a previous generation.
func (b *Backend) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := promreg.Replace(reg, collector{b}); err != nil {
		return fmt.Errorf("consul: register metrics: %w", err)
	}
	return nil
}

type collector struct{ b *Backend }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAge, descWatches, descRequests, descSwaps, descStale, descWatchEvents, descFirstTimeouts} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.mu.Lock()
	failed, swaps := b.stats.errors.Load(), b.stats.swaps.Load()
	ok := b.stats.requests.Load() - failed
	n := 0
	for k, w := range b.services {
		ok, failed, swaps = ok+w.requests.Load()-w.errors.Load(), failed+w.errors.Load(), swaps+w.swaps.Load()
		if _, age, has := w.get(); has {
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age.Seconds(), "service", k.name, k.dc)
		}
		n++
	}
	for k, w := range b.nodes {
		ok, failed, swaps = ok+w.requests.Load()-w.errors.Load(), failed+w.errors.Load(), swaps+w.swaps.Load()
		if _, age, has := w.get(); has {
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age.Seconds(), "node", k.name, k.dc)
		}
		n++
	}
	b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descWatches, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(failed), "error")
	ch <- prometheus.MustNewConstMetric(descSwaps, prometheus.CounterValue, float64(swaps))
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(b.stats.stale.Load()))
	ch <- prometheus.MustNewConstMetric(descWatchEvents, prometheus.CounterValue, float64(b.stats.started.Load()), "started")
	ch <- prometheus.MustNewConstMetric(descWatchEvents, prometheus.CounterValue, float64(b.stats.stopped.Load()), "stopped")
	ch <- prometheus.MustNewConstMetric(descFirstTimeouts, prometheus.CounterValue, float64(b.stats.firstTimeouts.Load()))
}
