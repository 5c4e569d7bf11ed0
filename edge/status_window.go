package edge

import (
	"math"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// latencySample is the state of one listener kind's latency histogram:
// the count and the cumulative count per upper bound.
type latencySample struct {
	count   uint64
	bounds  []float64
	buckets []uint64 // cumulative, one per bound
}

// minus returns what s counted since b (a zero b: everything).
func (s latencySample) minus(b latencySample) latencySample {
	d := latencySample{count: s.count - min(b.count, s.count), bounds: s.bounds, buckets: make([]uint64, len(s.buckets))}
	for i, n := range s.buckets {
		if i < len(b.buckets) && len(b.bounds) == len(s.bounds) {
			n -= min(b.buckets[i], n)
		}
		d.buckets[i] = n
	}
	return d
}

// quantile estimates the q-quantile, in seconds, by linear interpolation
// within the bucket it falls in, as Prometheus's histogram_quantile does;
// 0 without observations. Past the last bound it returns the last bound.
func (s latencySample) quantile(q float64) float64 {
	if s.count == 0 || len(s.bounds) == 0 {
		return 0
	}
	rank := q * float64(s.count)
	lower, below := 0.0, uint64(0)
	for i, n := range s.buckets {
		if float64(n) >= rank {
			in := n - below
			if in == 0 {
				return s.bounds[i]
			}
			return lower + (s.bounds[i]-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = s.bounds[i], n
	}
	return s.bounds[len(s.bounds)-1]
}

// statusSample is what /status takes from the metrics at one moment.
type statusSample struct {
	at      time.Time
	kinds   map[string]latencySample
	sources map[string]uint64 // answers by source, all kinds
}

// cache returns the cache hit ratio of the answers counted since base.
func (s statusSample) cache(base statusSample) statusCache {
	since := func(src string) uint64 { return s.sources[src] - min(base.sources[src], s.sources[src]) }
	c := statusCache{Hits: since("cache") + since("stale"), Upstream: since("upstream")}
	if n := c.Hits + c.Upstream; n > 0 {
		c.Ratio = float64(c.Hits) / float64(n)
	}
	return c
}

// sample reads dnsedge_query_duration_seconds from the server's
// registry. A failed gather gives an empty sample.
func (s *Server) sample(now time.Time) statusSample {
	out := statusSample{at: now, kinds: make(map[string]latencySample), sources: make(map[string]uint64)}
	mfs, err := s.prom.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "dnsedge_query_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			kind, src := labelValue(m, "listener"), labelValue(m, "source")
			h := m.GetHistogram()
			out.sources[src] += h.GetSampleCount()
			ks := out.kinds[kind]
			if ks.bounds == nil {
				for _, b := range h.GetBucket() {
					if !math.IsInf(b.GetUpperBound(), 1) {
						ks.bounds = append(ks.bounds, b.GetUpperBound())
					}
				}
				ks.buckets = make([]uint64, len(ks.bounds))
			}
			ks.count += h.GetSampleCount()
			for i, b := range h.GetBucket() {
				if i < len(ks.buckets) {
					ks.buckets[i] += b.GetCumulativeCount()
				}
			}
			out.kinds[kind] = ks
		}
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// window keeps recent samples so that /status shows rates over the last
// minute or so, with no goroutine: each request adds its sample (at most
// one a second is kept) and measures against the oldest kept.
type window struct {
	mu      sync.Mutex
	samples []statusSample
}

const (
	windowSpan = 60 * time.Second
	windowStep = time.Second
)

// add keeps cur and returns the sample to measure it against and the
// time between them. The first request measures against nothing since
// start (the counts are the process's).
func (w *window) add(cur statusSample, start time.Time) (statusSample, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.samples[:0]
	for _, s := range w.samples {
		if cur.at.Sub(s.at) <= windowSpan {
			keep = append(keep, s)
		}
	}
	w.samples = keep
	base := statusSample{at: start}
	if len(w.samples) > 0 {
		base = w.samples[0]
	}
	if n := len(w.samples); n == 0 || cur.at.Sub(w.samples[n-1].at) >= windowStep {
		w.samples = append(w.samples, cur)
	}
	if base.at.IsZero() || !base.at.Before(cur.at) {
		return base, 0
	}
	return base, cur.at.Sub(base.at)
}
