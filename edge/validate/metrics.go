package validate

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/internal/promreg"
)

// metrics counts validations by verdict and bogus answers by EDE.
type metrics struct {
	validations *prometheus.CounterVec
	bogus       *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsedge", Subsystem: "dnssec", Name: "validations_total",
			Help: "Answers validated, by verdict (secure, insecure, bogus, indeterminate).",
		}, []string{"verdict"}),
		bogus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsedge", Subsystem: "dnssec", Name: "bogus_total",
			Help: "Bogus answers, by the Extended DNS Error code they were answered with.",
		}, []string{"ede"}),
	}
}

func (m *metrics) count(verdict string, bogus bool, ede uint16) {
	m.validations.WithLabelValues(verdict).Inc()
	if bogus {
		m.bogus.WithLabelValues(strconv.Itoa(int(ede))).Inc()
	}
}

// Register registers the stage's metrics with reg, replacing those of
// the generation before: dnsedge_dnssec_validations_total{verdict},
// dnsedge_dnssec_bogus_total{ede} and, with an audit log,
// dnsedge_dnssec_audit_dropped_total and
// dnsedge_dnssec_audit_errors_total.
func (v *Validation) Register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{v.m.validations, v.m.bogus}
	if a := v.audit; a != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "dnsedge", Subsystem: "dnssec", Name: "audit_dropped_total",
				Help: "Audit log lines dropped because the writer was behind.",
			}, func() float64 { return float64(a.Dropped()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "dnsedge", Subsystem: "dnssec", Name: "audit_errors_total",
				Help: "Audit log lines that could not be written.",
			}, func() float64 { return float64(a.Errors()) }))
	}
	if err := promreg.Replace(reg, cs...); err != nil {
		return fmt.Errorf("dnssec: register metrics: %w", err)
	}
	return nil
}
