package cache

import (
	"fmt"
	"sync/atomic"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// collectors returns the cache's metrics. Counters are summed over the
// shards at scrape time, so serving a query never touches a counter shared
// between shards.
func (c *Cache) collectors() []prometheus.Collector {
	sum := func(pick func(*shard) *atomic.Uint64) func() float64 {
		return func() float64 {
			var n uint64
			for i := range c.shards {
				n += pick(&c.shards[i]).Load()
			}
			return float64(n)
		}
	}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "dnsedge", Subsystem: "cache", Name: name, Help: help}
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("hits_total", "Queries answered from the cache.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.hits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("misses_total", "Cacheable queries passed on because no fresh entry was found.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.misses })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("coalesced_total", "Misses answered by waiting for an identical miss already asked upstream.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.coalesced })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("evictions_total", "Entries removed to make room for new ones.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.evictions })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("stale_served_total", "Queries answered with a stale entry (RFC 8767).")),
			sum(func(s *shard) *atomic.Uint64 { return &s.staleServed })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("prefetches_total", "Popular entries refreshed before they expired.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.prefetches })),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("refresh_failures_total", "Refreshes of an expired or expiring entry that got no usable answer.")),
			sum(func(s *shard) *atomic.Uint64 { return &s.refreshFailures })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("entries", "Entries in the cache, expired ones not yet removed included.")),
			func() float64 { return float64(c.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("bytes", "Bytes the cached entries hold, as counted against the byte bound.")),
			func() float64 {
				var n int64
				for i := range c.shards {
					n += c.shards[i].bytes.Load()
				}
				return float64(n)
			}),
	}
	if c.l2 == nil {
		return cs
	}
	l2opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "dnsedge", Subsystem: "l2", Name: name, Help: help}
	}
	count := func(v *atomic.Uint64) func() float64 { return func() float64 { return float64(v.Load()) } }
	return append(cs,
		prometheus.NewCounterFunc(l2opts("hits_total", "Misses of the local cache answered from the shared cache."), count(&c.l2hits)),
		prometheus.NewCounterFunc(l2opts("misses_total", "Misses of the local cache that asked the shared cache and were answered by the upstream."), count(&c.l2misses)),
		prometheus.NewCounterFunc(l2opts("budget_exceeded_total", "Lookups in the shared cache not answered within the budget: the upstream was asked as well."), count(&c.l2late)),
		prometheus.NewCounterFunc(l2opts("late_hits_total", "Lookups answered after the budget that still beat the upstream."), count(&c.l2lateWins)),
		prometheus.NewCounterFunc(l2opts("stale_seeds_total", "Answers past their TTL read from the shared cache and kept locally for serve-stale."), count(&c.l2staleSeeds)),
	)
}

// Register registers the cache's metrics with reg, as New does, for a
// cache that a new configuration generation takes over.
func (c *Cache) Register(reg prometheus.Registerer) error {
	if err := promreg.Replace(reg, c.collectors()...); err != nil {
		return fmt.Errorf("cache: register metrics: %w", err)
	}
	return nil
}
