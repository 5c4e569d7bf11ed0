package listen

import (
	"errors"
	"sync/atomic"
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
var LatencyBuckets = latencyBucketsArr[:]

var latencyBucketsArr = [...]float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// latencyBoundsNs are LatencyBuckets in nanoseconds, for the hot path.
var latencyBoundsNs = func() (ns [len(latencyBucketsArr)]int64) {
	for i, b := range latencyBucketsArr {
		ns[i] = int64(b * float64(time.Second))
	}
	return ns
}()

// latencyHist is one series of dnsedge_query_duration_seconds: a count
// per bucket (the last one past every bound) and the sum in nanoseconds.
// Recording is two atomic adds and a short scan of integer bounds, a
// fraction of what a prometheus.Histogram's Observe costs on a cache
// hit; the series is read at scrape time, where its count is the sum of
// its buckets, so count and buckets always agree.
type latencyHist struct {
	counts [len(latencyBucketsArr) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

// observe records one query that took d.
func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(latencyBoundsNs) && int64(d) > latencyBoundsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// latencyCollector exports dnsedge_query_duration_seconds: the time from a
// query's receipt until the pipeline returned, by listener kind and answer
// source. Every series exists from the start, so a dashboard finds them
// all before the first query.
type latencyCollector struct {
	desc   *prometheus.Desc
	series [numKinds][numSources + 1]latencyHist
}

func newLatencyCollector() *latencyCollector {
	return &latencyCollector{desc: prometheus.NewDesc("dnsedge_query_duration_seconds",
		"Time from receiving a query until the pipeline answered it, by listener kind and answer source "+
			"(upstream, cache, stale, zone, tenant_zone, fallback, synthesized, policy, none, or error when the pipeline failed).",
		[]string{"listener", "source"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: one histogram per listener kind
// and source.
func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	for k := pipeline.KindUDP; int(k) < numKinds; k++ {
		for i := range c.series[k] {
			h := &c.series[k][i]
			buckets := make(map[float64]uint64, len(LatencyBuckets))
			var n uint64
			for b, bound := range LatencyBuckets {
				n += h.counts[b].Load()
				buckets[bound] = n
			}
			n += h.counts[len(LatencyBuckets)].Load()
			sum := float64(h.sumNs.Load()) / float64(time.Second)
			ch <- prometheus.MustNewConstHistogram(c.desc, n, sum, buckets, k.String(), sourceLabel(i))
		}
	}
}

// sourceLabel returns the source label of slot i.
func sourceLabel(i int) string {
	if i == numSources {
		return sourceError
	}
	return pipeline.Source(i).String()
}

// bindLatency binds the histograms of listener kind k to km, one per
// source, so that recording a query is one observe.
func (km *kindMetrics) bindLatency(c *latencyCollector, k pipeline.Kind) {
	for i := range km.latency {
		km.latency[i] = &c.series[k][i]
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
	if h := k.latency[slot]; h != nil {
		h.observe(req.Outcome.Latency)
	}
}
