package records

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
)

// Register registers m's metrics with reg, replacing those of a previous
// generation: changes committed and refused by the store, and each API
// zone's serial. Counters are read from m's atomics at scrape time.
func (m *Manager) Register(reg prometheus.Registerer) error {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "dnsedge", Subsystem: "records", Name: name, Help: help}
	}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(opts("changes_total", "Changes to API zones committed (journal fsynced) and published."),
			func() float64 { return float64(m.changes.Load()) }),
		prometheus.NewCounterFunc(opts("commit_errors_total", "Changes to API zones the store could not commit; nothing changed."),
			func() float64 { return float64(m.commitErrors.Load()) }),
		prometheus.NewCounterFunc(opts("replaced_total", "API zones replaced by a newer version another instance committed to the shared store (store: consul)."),
			func() float64 { return float64(m.replaced.Load()) }),
		&serialCollector{m: m, desc: prometheus.NewDesc("dnsedge_records_zone_serial",
			"The SOA serial of each API zone kept.", []string{"zone"}, nil)},
	}
	if err := promreg.Replace(reg, cs...); err != nil {
		return fmt.Errorf("records: register metrics: %w", err)
	}
	return nil
}

// serialCollector reports each API zone's serial at scrape time.
type serialCollector struct {
	m    *Manager
	desc *prometheus.Desc
}

func (c *serialCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *serialCollector) Collect(ch chan<- prometheus.Metric) {
	for _, o := range c.m.Origins() {
		if zs := c.m.state(o); zs != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(zs.cur.Load().serial), o)
		}
	}
}
