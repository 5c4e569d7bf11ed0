package canary

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histBuckets covers latencies up to 2^40 ns (about 18 minutes) with four
// buckets per power of two: a quantile is known within 19 %.
const (
	histSub     = 4
	histBuckets = 41 * histSub
)

// Histogram counts latencies in logarithmic buckets with atomic adds only:
// one per observation, so every query can afford it. The zero value is
// empty and ready; it is safe for concurrent use.
type Histogram struct {
	b [histBuckets]atomic.Int64
}

func bucketOf(d time.Duration) int {
	ns := uint64(max(d, 0))
	if ns < histSub {
		return int(ns)
	}
	e := bits.Len64(ns) - 1 // 2^e <= ns
	sub := int(ns>>(e-2)) & (histSub - 1)
	i := e*histSub + sub - (2*histSub - histSub) // buckets below 4 ns are 0..3
	return min(i, histBuckets-1)
}

// upper returns the largest latency bucket i holds.
func upper(i int) time.Duration {
	if i < histSub {
		return time.Duration(i)
	}
	i += histSub
	e, sub := i/histSub, i%histSub
	return time.Duration((uint64(histSub+sub+1) << (e - 2)) - 1)
}

// Observe counts one latency.
func (h *Histogram) Observe(d time.Duration) { h.b[bucketOf(d)].Add(1) }

// Snapshot returns the counts so far.
func (h *Histogram) Snapshot() HistSnapshot {
	var s HistSnapshot
	for i := range h.b {
		s.b[i] = h.b[i].Load()
	}
	return s
}

// HistSnapshot is a histogram's counts at one time.
type HistSnapshot struct{ b [histBuckets]int64 }

// Count returns the number of observations.
func (s HistSnapshot) Count() int64 {
	var n int64
	for _, c := range s.b {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket that holds quantile q
// (0 < q <= 1); 0 when empty.
func (s HistSnapshot) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.999999)
	var seen int64
	for i, c := range s.b {
		if seen += c; seen >= rank {
			return upper(i)
		}
	}
	return upper(histBuckets - 1)
}
