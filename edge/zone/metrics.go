package zone

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// collectors returns the metrics of z. Counters are read at scrape time
// from z's atomics; the records gauge from the snapshot in service.
func (z *Zones) collectors() []prometheus.Collector {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "dnsedge", Subsystem: "zone", Name: name, Help: help}
	}
	load := func(v *atomic.Uint64) func() float64 { return func() float64 { return float64(v.Load()) } }
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("reloads_total", "Zone files reloaded after they changed.")), load(&z.reloads)),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("reload_errors_total", "Zone file reloads that failed, the old zone kept.")), load(&z.reloadErrors)),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("fallback_answers_total", "Queries answered from a fallback zone because every upstream path failed.")), load(&z.fallbackAnswers)),
		&recordsCollector{z: z, desc: prometheus.NewDesc("dnsedge_zone_records",
			"Records in each zone in service, by set (shared, fallback, or tenant/<name>).", []string{"set", "zone"}, nil)},
	}
}

// recordsCollector reports the size of every zone in service.
type recordsCollector struct {
	z    *Zones
	desc *prometheus.Desc
}

func (c *recordsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *recordsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.z.snap.Load()
	emit := func(set string, zs *Set) {
		for _, zn := range zs.Zones() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(zn.Len()), set, zn.Origin())
		}
	}
	emit("shared", s.shared)
	emit("fallback", s.fallback)
	for i, t := range s.tenants {
		emit("tenant/"+c.z.tenants.names[i], t)
	}
}
