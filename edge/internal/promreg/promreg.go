// Package promreg registers the metrics of parts that a configuration
// reload rebuilds (the cache, zones, the NXDOMAIN cache): the part built
// for the new generation takes its metrics over from the one it replaces.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Replace registers cs with reg. A collector already registered under the
// same name, left by the previous configuration generation, is replaced;
// its counters start again from zero, which Prometheus reads as a counter
// reset. On failure nothing of cs stays registered.
func Replace(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, col := range cs {
		err := reg.Register(col)
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) && reg.Unregister(are.ExistingCollector) {
			err = reg.Register(col)
		}
		if err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
