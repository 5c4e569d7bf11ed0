package dnsname

import "testing"

func TestLower(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"already lower", "www.example.", "www.example."},
		{"ASCII folded", "WwW.ExAmPlE.", "www.example."},
		{"bytes that are not UTF-8 kept", "A\xa7\xa7.b.", "a\xa7\xa7.b."},
		{"UTF-8 letters kept", "Ä.example.", "Ä.example."},
		{"escapes kept", `A\065.B.`, `a\065.b.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Lower(tt.in); got != tt.want {
				t.Errorf("Lower(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { Lower("www.example.") }); n != 0 {
		t.Errorf("%v allocations for a lower-case name", n)
	}
}

// TestLowerEveryByte: the eight-byte scan finds an upper-case letter at
// every position of names of every length up to 24 (the last word
// overlapping the one before), of every value, and leaves every other byte alone.
func TestLowerEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for n, pos := 1, 0; n <= 24; pos++ {
			if pos == n {
				n, pos = n+1, -1
				continue
			}
			b := []byte("abcdefghijklmnopqrstuvwx"[:n])
			b[pos] = byte(c)
			want := append([]byte(nil), b...)
			if 'A' <= c && c <= 'Z' {
				want[pos] = byte(c) + 'a' - 'A'
			}
			if got := Lower(string(b)); got != string(want) {
				t.Fatalf("Lower(%q) = %q, want %q", b, got, want)
			}
		}
	}
}

func BenchmarkLower(b *testing.B) {
	for b.Loop() {
		Lower("h17.bench.test.")
	}
}
