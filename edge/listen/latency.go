package listen

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsedge/dnsedge/edge/pipeline"
)

// numSources bounds the answer sources that get their own series: every
// pipeline.Source up to and including SourcePolicy. Slot numSources holds
// the queries the pipeline answered with an error (SERVFAIL or the
// error's RCODE), whatever stage claimed them.
const numSources = int(pipeline.SourcePolicy) + 1

// sourceError is the label of the error slot.
const sourceError = "error"

// LatencyBuckets are the upper bounds, in seconds, of the query latency
// histograms: from a cache hit (tens of microseconds) to a query that
// used its whole budget (seconds).
var LatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// latencyVec is dnsedge_query_duration_seconds: the time from a query's
// receipt until the pipeline returned, by listener kind and answer source.
func latencyVec() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "dnsedge", Name: "query_duration_seconds",
		Help: "Time from receiving a query until the pipeline answered it, by listener kind and answer source " +
			"(upstream, cache, stale, zone, tenant_zone, fallback, synthesized, policy, none, or error when the pipeline failed).",
		Buckets: LatencyBuckets,
	}, []string{"listener", "source"})
}

// sourceLabel returns the source label of slot i.
func sourceLabel(i int) string {
	if i == numSources {
		return sourceError
	}
	return pipeline.Source(i).String()
}

// bindLatency binds the histograms of listener kind name to km, one
// observer per source, so that recording a query is one Observe.
func (km *kindMetrics) bindLatency(vec *prometheus.HistogramVec, name string) {
	for i := range km.latency {
		km.latency[i] = vec.WithLabelValues(name, sourceLabel(i))
	}
}

// served records how long the pipeline took to answer req and where the
// answer came from. A dropped query (pipeline.ErrDrop) is not recorded:
// no answer was sent.
func (k *kindMetrics) served(req *pipeline.Request, err error) {
	if k == nil {
		return
	}
	slot := int(req.Outcome.Source)
	switch {
	case err != nil && errors.Is(err, pipeline.ErrDrop):
		return
	case err != nil, slot >= numSources:
		slot = numSources
	}
	if o := k.latency[slot]; o != nil {
		o.Observe(float64(req.Outcome.Latency) / float64(time.Second))
	}
}
