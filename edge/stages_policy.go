package edge

import (
	"github.com/dnsedge/dnsedge/edge/middleware"
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/prometheus/client_golang/prometheus"
)

// buildPolicy applies the configuration's policy, compiled once when the
// configuration was parsed; none without one. The version in force and
// its number of rules are metrics of the generation. With consul's
// policy.enabled the policy comes from Consul KV instead, and the
// metrics follow the version in force there.
func buildPolicy(b *chainBuild) (pipeline.Middleware, error) {
	if mw, err := consulPolicy(b); mw != nil || err != nil {
		return mw, err
	}
	p := b.g.cfg.policy
	if p == nil {
		return nil, nil
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dnsedge_policy_info", Help: "The policy in force: 1, labelled with its version.",
	}, []string{"version"})
	info.WithLabelValues(p.Version()).Set(1)
	rules := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dnsedge_policy_rules", Help: "Rules of the policy in force.",
	})
	rules.Set(float64(p.Len()))
	for _, c := range []prometheus.Collector{info, rules} {
		if err := b.g.metrics.Register(c); err != nil {
			return nil, err
		}
	}
	return middleware.NewPolicy(p, b.g.cfg.defaultGroup()).Middleware, nil
}
