package main

import "testing"

func TestGCPercent(t *testing.T) {
	tests := []struct {
		name string
		live uint64
		want int
	}{
		{"nothing measured yet", 0, 400},
		{"small heap", 20 << 20, 400},
		{"64 MiB: headroom 256 MiB at 400", 64 << 20, 400},
		{"128 MiB", 128 << 20, 200},
		{"256 MiB", 256 << 20, 100},
		{"a million-entry cache", 600 << 20, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcPercent(tt.live); got != tt.want {
				t.Errorf("gcPercent(%d MiB) = %d, want %d", tt.live>>20, got, tt.want)
			}
		})
	}
}
