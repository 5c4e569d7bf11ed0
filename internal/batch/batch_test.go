package batch

import "testing"

func TestSize(t *testing.T) {
	tests := []struct {
		name string
		max  int
		took []int // each read's count, asked for what Next gave
		want []int // Next before each read
	}{
		{"one at a time stays at 2", 32, []int{1, 1, 1}, []int{2, 2, 2}},
		{"full batches double up to max", 32, []int{2, 4, 8, 16, 32, 32}, []int{2, 4, 8, 16, 32, 32}},
		{"a burst then a trickle", 32, []int{2, 4, 8, 3, 1}, []int{2, 4, 8, 16, 6}},
		{"max 1 never asks for more", 1, []int{1, 1}, []int{1, 1}},
		{"nothing read keeps 2", 8, []int{0, 0}, []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Size{Max: tt.max}
			for i, n := range tt.took {
				if got := s.Next(); got != tt.want[i] {
					t.Fatalf("read %d: Next() = %d, want %d", i, got, tt.want[i])
				}
				s.Took(n)
			}
		})
	}
}
