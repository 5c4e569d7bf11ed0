package main

import (
	"math"
	"runtime/metrics"
	"testing"
)

func TestTargetFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name        string
		live, other uint64
		env         int64
		percent     int
		limit       int64
	}{
		{"nothing measured yet", 0, 0, math.MaxInt64, 400, 32 * mib},
		{"tiny heap: GOGC caps the goal", 2 * mib, 4 * mib, math.MaxInt64, 400, (2 + 4 + 32) * mib},
		{"small heap: 16 MiB headroom", 8 * mib, 4 * mib, math.MaxInt64, 200, (8 + 4 + 32) * mib},
		{"32 MiB: all of it", 32 * mib, 4 * mib, math.MaxInt64, 100, (32 + 4 + 64) * mib},
		{"64 MiB: all of it", 64 * mib, 4 * mib, math.MaxInt64, 100, (64 + 4 + 128) * mib},
		{"96 MiB: 64 MiB", 96 * mib, 4 * mib, math.MaxInt64, 66, (96 + 4 + 128) * mib},
		{"128 MiB: 64 MiB, half of it", 128 * mib, 4 * mib, math.MaxInt64, 50, (128 + 4 + 128) * mib},
		{"a million-entry cache: half of it", 240 * mib, 12 * mib, math.MaxInt64, 50, (240 + 12 + 240) * mib},
		{"a huge heap: 256 MiB at most", 1024 * mib, 20 * mib, math.MaxInt64, 25, (1024 + 20 + 512) * mib},
		{"GOMEMLIMIT bounds the limit", 240 * mib, 12 * mib, 300 * mib, 50, 300 * mib},
		{"GOMEMLIMIT above the limit", 8 * mib, 4 * mib, 1024 * mib, 200, (8 + 4 + 32) * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := targetFor(tt.live, tt.other, tt.env)
			if got.percent != tt.percent || got.limit != tt.limit {
				t.Errorf("targetFor(%d MiB, %d MiB) = GOGC %d, limit %d MiB; want %d, %d MiB",
					tt.live>>20, tt.other>>20, got.percent, got.limit>>20, tt.percent, tt.limit>>20)
			}
		})
	}
}

// TestReadGC checks that the runtime reports every metric the tuner
// reads, so that it does not stop at its first tick.
func TestReadGC(t *testing.T) {
	s := make([]metrics.Sample, len(gcSamples))
	for i, name := range gcSamples {
		s[i].Name = name
	}
	live, other, ok := readGC(s)
	if !ok {
		t.Fatal("the runtime does not report the metrics the tuner reads")
	}
	if other == 0 {
		t.Errorf("no memory outside the heap reported (live %d)", live)
	}
}

// TestQuiet: memory is given back only when the process allocated little
// since the last tick and holds enough beyond its live heap.
func TestQuiet(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name                                   string
		allocated, before, live, objects, free uint64
		want                                   bool
	}{
		{"first tick", 100 * mib, 0, 10 * mib, 20 * mib, 0, false},
		{"busy", 100 * mib, 90 * mib, 10 * mib, 20 * mib, 0, false},
		{"quiet with garbage", 100 * mib, 100*mib - 1000, 10 * mib, 15 * mib, 0, true},
		{"quiet with free spans", 100 * mib, 100 * mib, 10 * mib, 11 * mib, 3 * mib, true},
		{"quiet, little to give", 100 * mib, 100 * mib, 10 * mib, 12 * mib, 1 * mib, false},
		{"objects under live", 100 * mib, 100 * mib, 10 * mib, 9 * mib, 10 * mib, false},
	}
	for _, tt := range tests {
		if got := quiet(tt.allocated, tt.before, tt.live, tt.objects, tt.free); got != tt.want {
			t.Errorf("%s: quiet = %v, want %v", tt.name, got, tt.want)
		}
	}
}
