package edge

import (
	"math"
	"testing"
	"time"
)

func TestLatencyQuantile(t *testing.T) {
	bounds := []float64{0.001, 0.01, 0.1}
	tests := []struct {
		name    string
		buckets []uint64 // cumulative
		count   uint64
		q, want float64
	}{
		{"empty", []uint64{0, 0, 0}, 0, 0.5, 0},
		{"all in the first bucket", []uint64{10, 10, 10}, 10, 0.5, 0.0005},
		{"median in the second", []uint64{2, 10, 10}, 10, 0.5, 0.001 + 0.009*3/8},
		{"p99 in the last", []uint64{0, 0, 100}, 100, 0.99, 0.01 + 0.09*0.99},
		{"past the last bound", []uint64{0, 0, 1}, 10, 0.99, 0.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := latencySample{count: tt.count, bounds: bounds, buckets: tt.buckets}
			if got := s.quantile(tt.q); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("quantile(%g) = %g, want %g", tt.q, got, tt.want)
			}
		})
	}
}

func TestLatencyMinus(t *testing.T) {
	bounds := []float64{0.001, 0.01}
	now := latencySample{count: 10, bounds: bounds, buckets: []uint64{4, 10}}
	tests := []struct {
		name string
		base latencySample
		want latencySample
	}{
		{"since nothing", latencySample{}, now},
		{"since a sample", latencySample{count: 6, bounds: bounds, buckets: []uint64{3, 6}}, latencySample{count: 4, buckets: []uint64{1, 4}}},
		{"counter reset does not underflow", latencySample{count: 20, bounds: bounds, buckets: []uint64{8, 20}}, latencySample{count: 0, buckets: []uint64{0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := now.minus(tt.base)
			if d.count != tt.want.count || d.buckets[0] != tt.want.buckets[0] || d.buckets[1] != tt.want.buckets[1] {
				t.Errorf("got count %d buckets %v, want %d %v", d.count, d.buckets, tt.want.count, tt.want.buckets)
			}
		})
	}
}

// TestStatusWindow: rates are measured against the oldest sample of the
// last minute; the first request against the server's start; at most one
// sample a second is kept.
func TestStatusWindow(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) statusSample { return statusSample{at: start.Add(d)} }
	var w window
	steps := []struct {
		at       time.Duration
		wantBase time.Duration
		wantSpan time.Duration
		wantKept int
	}{
		{10 * time.Second, 0, 10 * time.Second, 1},
		{10*time.Second + 300*time.Millisecond, 10 * time.Second, 300 * time.Millisecond, 1},
		{12 * time.Second, 10 * time.Second, 2 * time.Second, 2},
		{60 * time.Second, 10 * time.Second, 50 * time.Second, 3},
		{75 * time.Second, 60 * time.Second, 15 * time.Second, 2}, // 10 s and 12 s are over a minute old
	}
	for _, st := range steps {
		base, span := w.add(at(st.at), start)
		if base.at != start.Add(st.wantBase) || span != st.wantSpan || len(w.samples) != st.wantKept {
			t.Errorf("at %v: base %v span %v kept %d, want %v %v %d", st.at, base.at.Sub(start), span, len(w.samples),
				st.wantBase, st.wantSpan, st.wantKept)
		}
	}
}

func TestStatusCacheRatio(t *testing.T) {
	tests := []struct {
		name      string
		now, base map[string]uint64
		want      statusCache
	}{
		{"nothing", nil, nil, statusCache{}},
		{"hits and misses", map[string]uint64{"cache": 6, "stale": 2, "upstream": 2, "zone": 5}, nil, statusCache{Hits: 8, Upstream: 2, Ratio: 0.8}},
		{"since a base", map[string]uint64{"cache": 6, "upstream": 4}, map[string]uint64{"cache": 5, "upstream": 1}, statusCache{Hits: 1, Upstream: 3, Ratio: 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (statusSample{sources: tt.now}).cache(statusSample{sources: tt.base}); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStatusProviders: a section without a provider, or whose provider
// has nothing, shows "none"; otherwise what the provider returns.
func TestStatusProviders(t *testing.T) {
	type canary struct{ Share float64 }
	tests := []struct {
		name string
		f    func() any
		want any
	}{
		{"no provider", nil, "none"},
		{"nothing to show", func() any { return nil }, "none"},
		{"a state", func() any { return canary{Share: 0.05} }, canary{Share: 0.05}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := provided(tt.f); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
