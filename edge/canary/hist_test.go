package canary

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every latency falls in a bucket whose upper bound is at or above it
	// and within 25 % of it, and buckets grow with the latency.
	prev := -1
	for _, d := range []time.Duration{0, 1, 3, 4, 5, 7, 8, 100, 999, time.Microsecond, time.Millisecond, 1234567, 37 * time.Millisecond, time.Second, 10 * time.Minute} {
		i := bucketOf(d)
		if i < prev {
			t.Fatalf("%v in bucket %d, below the previous latency's %d", d, i, prev)
		}
		prev = i
		if u := upper(i); u < d || (d > 8 && float64(u) > 1.25*float64(d)) {
			t.Fatalf("%v in bucket %d with upper bound %v", d, i, u)
		}
		if i > 0 && upper(i-1) >= d {
			t.Fatalf("%v in bucket %d although bucket %d reaches %v", d, i, i-1, upper(i-1))
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	var h Histogram
	if q := h.Snapshot().Quantile(0.99); q != 0 {
		t.Fatalf("empty p99 = %v", q)
	}
	for i := range 1000 {
		d := time.Millisecond
		if i >= 990 {
			d = 200 * time.Millisecond
		}
		h.Observe(d)
	}
	s := h.Snapshot()
	if s.Count() != 1000 {
		t.Fatalf("count %d", s.Count())
	}
	if p := s.Quantile(0.99); p < time.Millisecond || p > 1250*time.Microsecond {
		t.Fatalf("p99 = %v, want about 1ms (990 of 1000 at 1ms)", p)
	}
	if p := s.Quantile(0.995); p < 200*time.Millisecond || p > 250*time.Millisecond {
		t.Fatalf("p99.5 = %v, want about 200ms", p)
	}
}
